"""Renders chat templates with Jinja2 configured as transformers' apply_chat_template does.

Reads {"now_ms": int, "cases": [{"template": str, "variables": {...}}]} as JSON on stdin and writes
a JSON list with {"output": str} or {"error": str} per case, in order. strftime_now reads the
pinned time now_ms in UTC (a model server's zone) so that the output can be compared.
"""

import json
import sys
from datetime import datetime, timezone

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def make_environment(now):
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return now.strftime(format)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment


def render(environment, compiled, case):
    try:
        source = case["template"]
        if source not in compiled:
            compiled[source] = environment.from_string(source)
        return {"output": compiled[source].render(**case["variables"])}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}


def main():
    request = json.load(sys.stdin)
    environment = make_environment(datetime.fromtimestamp(request["now_ms"] / 1000, tz=timezone.utc))
    compiled = {}
    json.dump([render(environment, compiled, case) for case in request["cases"]], sys.stdout)


main()
