"""Weight file formats read without their frameworks: Caffe's ``.caffemodel`` (`caffemodel`),
PyTorch's ``.pth`` (`torch_checkpoint`) and reading a named file (`files`).

They return names and arrays and know no model: a backbone's readers
(`lsattn.backbones`) map those names onto its variables.
"""
