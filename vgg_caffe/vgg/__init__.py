"""The VGG paper as data and generators: Table 1's configurations (configs.py) and the writer of
their train_val, deploy, deploy_dense and solver prototxt (netgen.py)."""
