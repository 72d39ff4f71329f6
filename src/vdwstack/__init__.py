"""vdwstack: stacking (slip and twist) of van der Waals bilayers and trilayers from ADF-STEM images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vdwstack")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
