"""Third-party chatter is filtered by exact message; anything else still reaches the user."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest

from exporters.logs import install_log_filters, known_warnings_filtered, runtime_logs_hidden


def test_known_warnings_are_filtered_and_others_are_not():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # show everything, unless the block below filters it
        with known_warnings_filtered():
            _warn_all()
    assert [str(w.message) for w in seen] == ["a real problem", "`isinstance(treespec, LeafSpec)` is deprecated"]


def _warn_all():
    warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
    warnings.warn("Mutation on a buffer in the model is detected. ExecuTorch assumes ...", UserWarning)
    warnings.warn("a real problem", UserWarning)
    warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", DeprecationWarning)  # other category


def test_known_log_records_are_dropped_and_others_kept(caplog):
    install_log_filters()
    install_log_filters()  # idempotent
    with caplog.at_level(logging.WARNING):
        logging.getLogger("torchao").warning("Failed to load /x/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: no")
        logging.getLogger("torchao").warning("Failed to load /x/torchao/quantization/other.py")
        logging.getLogger("torch.utils._pytree").warning("<enum 'K'> is an Enum subclass and is now natively "
                                                        "supported by torch.compile as an opaque value type.")
    assert [r.getMessage() for r in caplog.records] == ["Failed to load /x/torchao/quantization/other.py"]


def test_runtime_logs_are_hidden_at_the_descriptor_and_kept_when_the_block_fails(capfd, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the temporary log goes
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    with runtime_logs_hidden():
        os.write(2, b"[cpuinfo_utils.cpp:71] Reading file ...\n")  # as native code writes
        os.write(1, b"generated text\n")
    out, err = capfd.readouterr()
    assert out == "generated text\n" and err == "" and not list(tmp_path.iterdir())  # log removed
    with pytest.raises(RuntimeError, match=r"load failed \(runtime log: .*matedge-runtime-.*\.log\)") as e:
        with runtime_logs_hidden():
            os.write(2, b"E tensor_impl.cpp:99] Attempted to resize a static tensor\n")
            raise RuntimeError("load failed")
    log = Path(str(e.value).rsplit("runtime log: ", 1)[1].rstrip(")"))
    assert "Attempted to resize" in log.read_text() and capfd.readouterr().err == ""
    with runtime_logs_hidden(show=True):
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


def test_an_interrupted_runtime_leaves_no_log(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(KeyboardInterrupt):
        with runtime_logs_hidden():
            raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())


def test_an_error_with_nothing_logged_leaves_no_log_and_keeps_its_message(tmp_path, monkeypatch):
    """A bad input raised inside (one clear line) is not padded with the name of an empty log."""
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(ValueError) as e:
        with runtime_logs_hidden(fds=(1, 2), kind="converter"):
            raise ValueError("widths [12] are not multiples of 32")
    assert str(e.value) == "widths [12] are not multiples of 32" and not list(tmp_path.iterdir())


def test_converter_mode_hides_stdout_progress_too(capfd, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(RuntimeError, match=r"\(converter log: .*matedge-converter-.*\.log\)") as e:
        with runtime_logs_hidden(fds=(1, 2), kind="converter"):
            os.write(1, b"(00:00) [START] LiteRT-Torch Convert\n")  # progress, as litert-torch prints it
            raise RuntimeError("conversion failed")
    assert capfd.readouterr() == ("", "")
    log = Path(str(e.value).rsplit("converter log: ", 1)[1].rstrip(")"))
    assert "LiteRT-Torch Convert" in log.read_text()
