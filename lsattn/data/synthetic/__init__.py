"""The embedded datasets, written offline in the official layouts.

`room`: a ray-cast textured room in the 7-Scenes layout (and the MIT-67-layout
classes); `walks`: the room along independent hand-held walks, one held out;
`cue_scale`: MIT-67-layout sets whose classes differ only by a fine texture or
only by a coarse layout.
"""
