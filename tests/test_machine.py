"""lrdlib.machine: the processor and machine names that records and the sittings log carry."""
import os

import torch

from lrdlib.machine import cpu_identity, cpu_name, machine, processor


def test_cpu_name(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_name(f) == "AMD EPYC 7B13"
    f.write_text("processor\t: 0\nmodel name\t: \n")
    assert cpu_name(f) is None
    assert cpu_name(tmp_path / "absent") is None


def test_cpu_identity_names_family_model_and_instruction_set(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nstepping\t: 1\n")
    assert cpu_identity(f, "AVX512") == "AMD EPYC (family 26 model 2, AVX512)"
    assert cpu_identity(f, "AVX2") != cpu_identity(f, "AVX512")      # same name, other rounding
    f.write_text("model name\t: Apple M2\n")
    assert cpu_identity(f, "") == "Apple M2"
    assert cpu_identity(tmp_path / "absent", "AVX2") is None


def test_machine_and_processor_on_this_cpu():
    name = cpu_identity()
    assert (name is None) == (cpu_name() is None) and (name is None or name.startswith(cpu_name()))
    assert torch.backends.cpu.get_cpu_capability() in (name or torch.backends.cpu.get_cpu_capability())
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
    assert rec["device"] == "cpu" and rec["processor"] == cpu_identity()
