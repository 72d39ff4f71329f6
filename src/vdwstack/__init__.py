"""vdwstack: stacking (slip and twist) of van der Waals bilayers and trilayers from ADF-STEM images.

The Python API (:mod:`vdwstack.api`) for notebooks::

    import vdwstack as vs
    r = vs.read_stacking("image.dm4", material="ReS2", task="slip", models="results/models")
    print(r); r.to_dict(); r.plot(); r.atoms()

Names are imported on first use (:mod:`vdwstack.core.lazy`): ``import vdwstack.<stage>`` in the
workflow's rules must not pay for PyTorch and abTEM.
"""

from importlib.metadata import PackageNotFoundError, version

from vdwstack.core.lazy import lazy_exports

try:
    __version__ = version("vdwstack")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__getattr__, __all__ = lazy_exports(__name__, {
    "read_stacking": "api", "StackingResult": "api", "TaskReading": "api", "simulate_image": "api",
})
