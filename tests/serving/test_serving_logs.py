"""Server log lines: one JSON object per event, with time and level, tracebacks included."""

from __future__ import annotations

import json
import logging
import logging.config
import sys

from qianmian.logs import JsonLineFormatter, server_log_config


def test_a_record_with_a_traceback_is_one_json_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("serving.x", logging.ERROR, __file__, 1, "failed %s", ("batch",),
                                   exc_info=sys.exc_info())
    record.created = 1767225600.25  # 2026-01-01T00:00:00.250Z
    line = JsonLineFormatter().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["ts"] == "2026-01-01T00:00:00.250+00:00" and fields["level"] == "ERROR"
    assert fields["logger"] == "serving.x" and fields["message"] == "failed batch"
    assert "ValueError: boom" in fields["exc"]


def test_the_server_config_routes_uvicorn_and_app_loggers_through_it(capsys) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logging.config.dictConfig(server_log_config("info"))
        logging.getLogger("serving.state").info("policy revision %d applied", 3)
        logging.getLogger("uvicorn.error").warning("worker started")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(line["logger"], line["level"]) for line in lines] == [
            ("serving.state", "INFO"), ("uvicorn.error", "WARNING")]
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
