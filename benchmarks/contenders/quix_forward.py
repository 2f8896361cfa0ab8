"""Contender: Quix Streams forwarding (its own JSON serializers, as a Quix user writes it)."""

from __future__ import annotations

from typing import Any

from benchmarks import env
from benchmarks.contenders._quix_common import application


def add_field(value: dict[str, Any]) -> dict[str, Any]:
    value["forwarded"] = True
    return value


def main() -> None:
    app = application(use_changelog_topics=False)
    source = app.topic(env.get(env.INPUT), key_deserializer="bytes", value_deserializer="json")
    sink = app.topic(env.get(env.OUTPUT), key_serializer="bytes", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.apply(add_field)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
