"""What every stage shares: files (image datasets, TIFF, JSON, loss logs), reading experimental
images, the microscope's settings, resampling, settings dataclasses and config validation, sample
sheets, provenance digests, logging. Nothing here imports a stage, or PyTorch (see
:mod:`vdwstack.core.torch_utils` for the PyTorch stages' helpers)."""
