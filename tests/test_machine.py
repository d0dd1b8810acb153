"""lrdlib.machine: the processor and machine names that records and the sittings log carry."""
import os

import torch

from lrdlib.machine import cpu_name, machine, processor


def test_cpu_name(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_name(f) == "AMD EPYC 7B13"
    f.write_text("processor\t: 0\nmodel name\t: \n")
    assert cpu_name(f) is None
    assert cpu_name(tmp_path / "absent") is None


def test_machine_and_processor_on_this_cpu():
    name = cpu_name()
    assert processor("cpu") == name and processor(torch.device("cpu")) == name
    assert machine("cpu") == f"cpu, {os.cpu_count()} cores" + (f" ({name})" if name else "")


def test_a_record_names_its_processor():
    from lrdlib.config import RunConfig
    from lrdlib.data import TaskConfig
    from lrdlib.model import ModelConfig
    from lrdlib.training import run

    cfg = RunConfig(task=TaskConfig(p=11, train_frac=0.5), model=ModelConfig(vocab_size=12, dim=8, heads=2, mlp_dim=16),
                    steps=2, eval_every=1, batch_size=8)
    rec = run(cfg)[0]
    assert rec["device"] == "cpu" and rec["processor"] == cpu_name()
