"""The classic pycaffe workflow, written for BVLC pycaffe and run unchanged by
`python -m vgg_caffe.pycaffe classic_workflow.py OUT_DIR`: build a LeNet-like net with NetSpec,
train it with SGDSolver.step, turn its fully connected layers into convolutions by net surgery,
and classify a real photo with Transformer and Classifier. Prints KEY VALUE lines for the test."""
import os
import sys

import caffe
import numpy as np
import skimage.data
import skimage.io
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

out = sys.argv[1]
MEAN = np.array([104.0, 117.0, 123.0])


def lenet(batch, deploy, full_conv=False):
    n = caffe.NetSpec()
    if deploy:
        n.data = L.Input(shape=dict(dim=[batch, 3, 16, 16]))
    else:
        n.data, n.label = L.Input(shape=[dict(dim=[batch, 3, 16, 16]), dict(dim=[batch])], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=6, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    if full_conv:
        n["ip1-conv"] = L.Convolution(n.pool1, kernel_size=6, num_output=16)
        n.relu1 = L.ReLU(n["ip1-conv"], in_place=True)
        n["ip2-conv"] = L.Convolution(n.relu1, kernel_size=1, num_output=3)
        n.prob = L.Softmax(n["ip2-conv"])
        return n.to_proto()
    n.ip1 = L.InnerProduct(n.pool1, num_output=16, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=3, weight_filler=dict(type="xavier"))
    if deploy:
        n.prob = L.Softmax(n.ip2)
    else:
        n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n.to_proto()


def save(name, message):
    path = os.path.join(out, name)
    with open(path, "w") as f:
        f.write(str(message))
    return path


train_path = save("train.prototxt", lenet(30, deploy=False))
deploy_path = save("deploy.prototxt", lenet(10, deploy=True))
conv_path = save("deploy_conv.prototxt", lenet(1, deploy=True, full_conv=True))

s = caffe_pb2.SolverParameter()
s.net = train_path
s.base_lr, s.momentum, s.weight_decay = 0.01, 0.9, 5e-4
s.lr_policy = "fixed"
s.max_iter, s.display, s.random_seed = 100, 0, 7
s.snapshot_prefix = os.path.join(out, "lenet")
s.solver_mode = caffe_pb2.SolverParameter.CPU
solver_path = save("solver.prototxt", s)

# three classes of 16x16 images: class k has a bright square in channel k
rng = np.random.RandomState(0)
labels = np.arange(30) % 3
images = rng.rand(30, 3, 16, 16).astype(np.float32) * 20
for i, k in enumerate(labels):
    images[i, k, 4:12, 4:12] += 100
inputs = (images - 60) / 100   # what the net is trained on

caffe.set_mode_cpu()
solver = caffe.SGDSolver(solver_path)
print("blobs", " ".join("%s:%s" % (k, "x".join(map(str, v.data.shape))) for k, v in solver.net.blobs.items()))
losses = []
for it in range(25):
    solver.net.blobs["data"].data[...] = inputs
    solver.net.blobs["label"].data[...] = labels
    solver.step(1)
    losses.append(float(solver.net.blobs["loss"].data))
print("loss_first", losses[0])
print("loss_last", losses[-1])
print("iter", solver.iter)
weights = os.path.join(out, "lenet.caffemodel")
solver.net.save(weights)

# net surgery: the fully connected layers become convolutions with the same weights
net = caffe.Net(deploy_path, weights, caffe.TEST)
params = ["ip1", "ip2"]
fc_params = {pr: (net.params[pr][0].data, net.params[pr][1].data) for pr in params}
net_full_conv = caffe.Net(conv_path, weights, caffe.TEST)
params_full_conv = ["ip1-conv", "ip2-conv"]
conv_params = {pr: (net_full_conv.params[pr][0].data, net_full_conv.params[pr][1].data) for pr in params_full_conv}
for pr, pr_conv in zip(params, params_full_conv):
    conv_params[pr_conv][0].flat = fc_params[pr][0].flat
    conv_params[pr_conv][1][...] = fc_params[pr][1]
net_full_conv.save(os.path.join(out, "lenet_full_conv.caffemodel"))
x = inputs[:1]
net.blobs["data"].reshape(1, 3, 16, 16)
net.reshape()
fc_prob = net.forward(data=x)["prob"].copy()
conv_prob = net_full_conv.forward(data=x)["prob"]
print("surgery_max_diff", float(np.abs(conv_prob.reshape(1, 3) - fc_prob).max()))
net.blobs["data"].reshape(10, 3, 16, 16)
net.reshape()
predicted = net.forward_all(data=inputs)["prob"].argmax(1)
print("train_accuracy", float((predicted == labels).mean()))

# classify a real photo
photo = os.path.join(out, "cat.png")
skimage.io.imsave(photo, skimage.data.chelsea())
im = caffe.io.load_image(photo)
transformer = caffe.io.Transformer({"data": (1, 3, 16, 16)})
transformer.set_transpose("data", (2, 0, 1))
transformer.set_mean("data", MEAN)
transformer.set_raw_scale("data", 255)
transformer.set_channel_swap("data", (2, 1, 0))
net.blobs["data"].reshape(1, 3, 16, 16)
net.reshape()
net.blobs["data"].data[...] = transformer.preprocess("data", im)
prob = net.forward()["prob"][0]
print("photo_class", int(prob.argmax()), "photo_prob_sum", float(prob.sum()))
classifier = caffe.Classifier(deploy_path, weights, image_dims=(20, 20), mean=MEAN, raw_scale=255,
                              channel_swap=(2, 1, 0))
scores = classifier.predict([im, im[:150, :200]])
print("classifier_shape", "x".join(map(str, scores.shape)), "classifier_sums", " ".join("%.6f" % v for v in scores.sum(1)))
print("done")
