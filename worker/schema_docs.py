"""Write the wire contract's documents: the AsyncAPI document as YAML and a JSON Schema per body.

YAML lives here rather than in ``contracts`` so that the contracts stay installable with pydantic
alone.
"""

import json
from pathlib import Path

import yaml

from contracts.documents import asyncapi, json_schemas

ASYNCAPI_FILE = "asyncapi.yaml"


class _PlainDumper(yaml.SafeDumper):
    # Anchors and aliases (&id001) would hide repeated parts from readers and from some AsyncAPI tools.
    def ignore_aliases(self, data: object) -> bool:
        return True


def render_asyncapi_yaml(**topology: str) -> str:
    """The AsyncAPI document as YAML; ``topology`` overrides exchange and queue names
    (see ``contracts.documents.TOPOLOGY_NAMES``)."""
    # Key order is kept as built (asyncapi, info, servers, channels, ...), the order people read in.
    return yaml.dump(
        asyncapi(**topology), Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=100
    )


def write_documents(out_dir: Path, **topology: str) -> list[Path]:
    """Write ``asyncapi.yaml`` and one ``<name>.schema.json`` per body into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / ASYNCAPI_FILE]
    written[0].write_text(render_asyncapi_yaml(**topology), encoding="utf-8")
    for name, schema in json_schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
