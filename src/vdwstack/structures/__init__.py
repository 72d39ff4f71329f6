"""Stage 1, structures: materials (monolayer cells from ``resources/``), stacking symmetry, the
geometry of stacked layers, the enumeration of a dataset's stackings, stacking names; and the
material's lattice as seen in an image (reciprocal lattice, the pixel-size resolver)."""

from vdwstack.structures.enumeration import enumerate_dataset, read_table, write_table
from vdwstack.structures.geometry import StackGeometry, build_stack
from vdwstack.structures.materials import MATERIALS, Material, get_material, monolayer
from vdwstack.structures.names import name_stacking, stacking_names
from vdwstack.structures.pixel_size import PixelSize, estimate_pixel_size, read_calibrated_image, resolve_pixel_size
from vdwstack.structures.symmetry import StackingSymmetry, symmetry_for

__all__ = ["MATERIALS", "Material", "PixelSize", "StackGeometry", "StackingSymmetry", "build_stack",
           "enumerate_dataset", "estimate_pixel_size", "get_material", "monolayer", "name_stacking",
           "read_calibrated_image", "read_table", "resolve_pixel_size", "stacking_names", "symmetry_for",
           "write_table"]
