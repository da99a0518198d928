"""The backbone family: the CNNs whose feature maps ("taps") the model attends over."""
