"""The access lines of a media-proxy JSON log (`log.format = "json"`), as dicts of their
fields; other lines (start-up, warnings) are skipped. Used by bench/overload.sh."""
import json


def access_lines(path):
    for line in open(path):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        f = e.get("fields", e)
        if "status" in f:
            yield f
