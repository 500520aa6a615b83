"""edged.runtime.edgetpu's flatbuffer reader against the schema bindings that ship with
ai-edge-litert (an independent reader of the same file). Not marked ``legacy``:
tflite-runtime ships no schema bindings, and the reader does not depend on the runtime."""

from __future__ import annotations

from pathlib import Path

from edged.runtime.edgetpu import custom_ops
from tests.support.daemon import MODELS
from tests.support.flatbuf import with_custom_op


def test_the_reader_agrees_with_the_schema_bindings(tmp_path: Path) -> None:
    # Imported here: the legacy environment collects this module too, without the package.
    from ai_edge_litert import schema_py_generated as schema

    tpu_model = with_custom_op(MODELS / "digits_int8.tflite", tmp_path / "digits_edgetpu.tflite")
    m = schema.Model.GetRootAsModel(tpu_model.read_bytes(), 0)
    names = {m.OperatorCodes(i).CustomCode() for i in range(m.OperatorCodesLength())}
    assert {n.decode() for n in names if n} == custom_ops(tpu_model) == {"edgetpu-custom-op"}
