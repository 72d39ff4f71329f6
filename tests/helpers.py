"""Small builders shared by the tests."""

from vdwstack.core.microscope import MICROSCOPE_DEFAULTS


def make_row(material="MoS2", size=128, pixel_size_A=0.1, **kw):
    row = dict(
        sample_id="t", material=material, layers=2, Da_A=0.0, Db_A=0.0, Da2_A=0.0, Db2_A=0.0,
        theta_deg=0.0, rotation_deg=0.0, origin_x_A=size * pixel_size_A / 2, origin_y_A=size * pixel_size_A / 2,
        pixel_size_A=pixel_size_A, height_px=size, width_px=size, seed=7, **MICROSCOPE_DEFAULTS,
    )
    row.update(kw)
    return row
