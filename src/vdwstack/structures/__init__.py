"""Stage 1, structures: materials (monolayer cells from ``resources/``), stacking symmetry, the
geometry of stacked layers, the enumeration of a dataset's stackings, stacking names; and the
material's lattice as seen in an image (reciprocal lattice, the pixel-size resolver).

Names are imported on first use (:mod:`vdwstack.core.lazy`), so that using one module (the report
uses the stacking names) does not import the others' dependencies."""

from vdwstack.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "enumerate_dataset": "enumeration", "read_table": "enumeration", "write_table": "enumeration",
    "StackGeometry": "geometry", "build_stack": "geometry",
    "MATERIALS": "materials", "Material": "materials", "get_material": "materials", "monolayer": "materials",
    "name_stacking": "names", "stacking_names": "names",
    "PixelSize": "pixel_size", "estimate_pixel_size": "pixel_size", "read_calibrated_image": "pixel_size",
    "resolve_pixel_size": "pixel_size",
    "StackingSymmetry": "symmetry", "symmetry_for": "symmetry",
})
