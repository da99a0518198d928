r"""Exports a trained run as one file that needs only jax and numpy to run.

  python export.py --workdir=runs/demo_pose --output=demo_pose.jaxexport \
      [--platforms=cpu,cuda]

Writes F (--output): the bytes of `jax.export.Exported.serialize()` of the
evaluation function with the trained parameters baked in and a symbolic batch
size, and F.json beside it (input size, channel mean, pose convention or class
names, layer names, number of steps, each output's meaning and shape). Load:

  exported = jax.export.deserialize(open(F, "rb").read())
  outputs = exported.call(images)  # float32 [B, S, S, 3], RGB, 0-255, resized and
                                   # centre-cropped to S (the mean is subtracted inside)

Outputs: position [B, 3] and orientation [B, 4] (pose) or logits [B, C]
(classification), and layer_choices [N, B, k]. Uses the run's own config
(<workdir>/config.json; --config is needed only for runs without it).
"""

from lsattn import cli

if __name__ == "__main__":
  cli.export()
