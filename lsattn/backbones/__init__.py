"""CNN backbones other than GoogLeNet, each returning the taps the core selects from."""
