"""PyTorch's training step on the same network, for bench/train-step.ts (not a test).

Run: python3 bench/torch-step.py MODEL.onnx BATCH CHANNELS SIZE [STEPS]

Builds the ONNX model's network in PyTorch (Conv, BatchNormalization, Relu, Clip, Add, pools,
Flatten/Reshape, Gemm — what the benchmark's models use; anything else stops with its op
name), with the first convolution cut to CHANNELS inputs when the model has more, then
times one SGD step (Nesterov momentum 0.9, weight decay 5e-4, cross-entropy) and one
inference forward on a fixed random batch, every core in use. Prints one JSON line:
{"torch": version, "threads": n, "step_ms": median, "forward_ms": median}.
Needs python3 with torch and onnx (Debian: python3-torch python3-onnx).
"""
import json
import os
import statistics
import sys
import time

import onnx
import torch
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxNet(torch.nn.Module):
    def __init__(self, model, channels):
        super().__init__()
        g = model.graph
        init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
        self.nodes = []
        self.layers = torch.nn.ModuleList()
        first_conv = True
        for node in g.node:
            a = attrs(node)
            op = node.op_type
            if op == "Conv":
                w = init[node.input[1]]
                if first_conv and w.shape[1] > channels:
                    w = w[:, :channels].contiguous()
                first_conv = False
                pads = a.get("pads", [0] * 4)
                if pads[:2] != pads[2:]:
                    raise SystemExit(f"torch-step: asymmetric pads at {node.name}")
                layer = torch.nn.Conv2d(
                    w.shape[1] * a.get("group", 1), w.shape[0], tuple(w.shape[2:]),
                    stride=tuple(a.get("strides", [1, 1])), padding=tuple(pads[:2]),
                    dilation=tuple(a.get("dilations", [1, 1])), groups=a.get("group", 1),
                    bias=len(node.input) > 2)
                layer.weight.data.copy_(w)
                if len(node.input) > 2:
                    layer.bias.data.copy_(init[node.input[2]])
            elif op == "BatchNormalization":
                scale = init[node.input[1]]
                layer = torch.nn.BatchNorm2d(scale.shape[0], eps=a.get("epsilon", 1e-5))
                layer.weight.data.copy_(scale)
                layer.bias.data.copy_(init[node.input[2]])
                layer.running_mean.copy_(init[node.input[3]])
                layer.running_var.copy_(init[node.input[4]])
            elif op == "Gemm":
                w = init[node.input[1]]
                if a.get("transB", 0) == 0:
                    w = w.t()
                layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=len(node.input) > 2)
                layer.weight.data.copy_(w)
                if len(node.input) > 2:
                    layer.bias.data.copy_(init[node.input[2]])
            else:
                layer = None
            if layer is not None:
                self.layers.append(layer)
            self.nodes.append((node, a, layer))
        self.input = next(i.name for i in g.input if i.name not in init)
        self.output = g.output[0].name
        self.constants = dict(init)

    def forward(self, x):
        env = {self.input: x}

        def get(name):
            return env[name] if name in env else self.constants[name]

        for node, a, layer in self.nodes:
            op, ins = node.op_type, node.input
            if layer is not None:
                y = layer(get(ins[0]))
            elif op == "Relu":
                y = torch.relu(get(ins[0]))
            elif op == "Clip":
                low = get(ins[1]).item() if len(ins) > 1 and ins[1] else a.get("min")
                high = get(ins[2]).item() if len(ins) > 2 and ins[2] else a.get("max")
                y = torch.clamp(get(ins[0]), low, high)
            elif op == "Add":
                y = get(ins[0]) + get(ins[1])
            elif op == "GlobalAveragePool":
                y = torch.nn.functional.adaptive_avg_pool2d(get(ins[0]), 1)
            elif op == "MaxPool":
                y = torch.nn.functional.max_pool2d(get(ins[0]), a["kernel_shape"], a.get("strides"),
                                                   a.get("pads", [0, 0])[:2])
            elif op == "AveragePool":
                y = torch.nn.functional.avg_pool2d(get(ins[0]), a["kernel_shape"], a.get("strides"),
                                                   a.get("pads", [0, 0])[:2])
            elif op == "Flatten":
                y = torch.flatten(get(ins[0]), a.get("axis", 1))
            elif op == "Shape":
                y = torch.tensor(get(ins[0]).shape, dtype=torch.int64)
            elif op == "Constant":
                y = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
            elif op == "Gather":
                y = torch.index_select(get(ins[0]), a.get("axis", 0), get(ins[1]).reshape(-1))
                if get(ins[1]).dim() == 0:
                    y = y.squeeze(a.get("axis", 0))
            elif op == "Unsqueeze":
                y = get(ins[0])
                for axis in sorted(a["axes"] if "axes" in a else get(ins[1]).tolist()):
                    y = y.unsqueeze(axis)
            elif op == "Concat":
                y = torch.cat([get(i) for i in ins], a.get("axis", 0))
            elif op == "Reshape":
                y = get(ins[0]).reshape(tuple(int(d) for d in get(ins[1]).tolist()))
            elif op == "Identity":
                y = get(ins[0])
            else:
                raise SystemExit(f"torch-step: op {op} ({node.name}) is not supported")
            env[node.output[0]] = y
        return env[self.output]


def median_ms(fn, runs, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    file, batch, channels, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    net = OnnxNet(onnx.load(file), channels)
    x = torch.randn(batch, channels, size, size)
    labels = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), labels)
        loss.backward()
        optimizer.step()

    net.train()
    step_ms = median_ms(step, steps)
    net.eval()
    with torch.no_grad():
        forward_ms = median_ms(lambda: net(x), steps)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "step_ms": step_ms, "forward_ms": forward_ms}))


if __name__ == "__main__":
    main()
