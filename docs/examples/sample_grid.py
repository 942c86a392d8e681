"""prakit from Python: load a trained run, sample every class and save the grid.

    python docs/examples/sample_grid.py runs/quickstart grid.png
"""

import sys

import prakit
from prakit.data import save_grid

run, out = sys.argv[1:3] if len(sys.argv) > 2 else ("runs/quickstart", "grid.png")
model = prakit.load(run)  # the latest checkpoint, on the GPU if there is one
per_class = 8
classes = [c for c in range(model.num_classes) for _ in range(per_class)]
images = model.sample(classes)  # (N, H, W, C) uint8, drawn as the run's sample section says
save_grid(images.cpu().numpy(), out, rows=model.num_classes)
print(f"{len(images)} images of {model.num_classes} classes ({model.config.model.rollout.name}, guidance "
      f"{model.sampling.cfg_scale:g}, {model.sampling.ema} EMA weights on {model.device}): {out}")
