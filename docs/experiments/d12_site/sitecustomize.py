"""D12 (an experiment, not the product): V sees Take Cover's rows TOP:BOTTOM only.

With ``PYTHONPATH=docs/experiments/d12_site`` and ``WM_DOOM_ROWS=48:112``, every Python
process of a run (the pipeline and its worker processes) resizes rows 48-111 of the 120x160
frame to 64x64 instead of the whole frame. Rows 0-47 (the ceiling) and 112-119 (the floor) never
change in Take Cover; the monsters and the fireballs live in between, so V gets ~1.9x more
rows for them. CarRacing frames are left as they are. The run folders do not record the
crop: the notebook (D12) does.
"""

import os

_band = os.environ.get("WM_DOOM_ROWS", "")
if _band:
    import cv2
    import numpy as np

    import worldmodels.worlds as _worlds

    _top, _bottom = (int(v) for v in _band.split(":"))
    _original = _worlds.preprocess_frame

    def _preprocess_frame(world, frame, frame_size=64, crop_rows=84):
        if world.name != "take_cover":
            return _original(world, frame, frame_size, crop_rows)
        frame = np.asarray(frame)
        if frame.shape != world.raw_shape or frame.dtype != np.uint8:
            return _original(world, frame, frame_size, crop_rows)  # its error message
        band = np.ascontiguousarray(frame[_top:_bottom])
        return cv2.resize(band, (frame_size, frame_size), interpolation=cv2.INTER_AREA)

    _worlds.preprocess_frame = _preprocess_frame
