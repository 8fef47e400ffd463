"""Label files: parse and validate users' label files into TensorBay's label model."""
