"""Nets and helpers shared by the pycaffe API tests."""
import numpy as np

# conv -> in-place ReLU -> pool -> fc -> fc2 -> loss; small enough to check by hand.
SMALL = '''
name: "small"
{force}
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 9 dim: 11 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 4 } } include { phase: TRAIN } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 5 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
        inner_product_param { num_output: 6 weight_filler { type: "xavier" } bias_filler { type: "gaussian" } } }
layer { name: "fc2" type: "InnerProduct" bottom: "fc" top: "fc2"
        inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" include { phase: TRAIN } }
layer { name: "prob" type: "Softmax" bottom: "fc2" top: "prob" include { phase: TEST } }
'''


def inputs(seed=0, n=4):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 3, 9, 11).astype(np.float32), rng.randint(0, 4, n).astype(np.float32)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)
