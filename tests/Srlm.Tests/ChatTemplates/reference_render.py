"""Renders chat templates with Python's jinja2 configured as transformers' apply_chat_template configures it
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception, strftime_now, a tojson
that keeps non-ASCII). The reference the C# interpreter is compared with, byte for byte.

stdin: {"cases": [{"template": str, "context": {...}}, ...]}
stdout: [{"text": str} | {"raised": str} | {"error": str}, ...] (JSON, UTF-8)
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Raised(jinja2.exceptions.TemplateError):
    pass


def raise_exception(message):
    raise Raised(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


class AssistantTracker(Extension):
    """transformers' {% generation %} tag: renders its body (transformers also records where it is)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
results = []
compiled = {}
for case in request["cases"]:
    try:
        source = case["template"]
        if source not in compiled:
            compiled[source] = env.from_string(source)
        results.append({"text": compiled[source].render(**case["context"])})
    except Raised as e:
        results.append({"raised": str(e)})
    except Exception as e:  # noqa: BLE001 - every failure is a result the C# side compares
        results.append({"error": f"{type(e).__name__}: {e}"})
sys.stdout.buffer.write(json.dumps(results, ensure_ascii=False).encode("utf-8"))
