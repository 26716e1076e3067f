"""A dynamic resource that writes a file, so the smoke test can see create and delete happen, and a
pulumi-command `local.Command` (the plugin installed offline by scripts/install-pulumi)."""

import pathlib

import pulumi
import pulumi.dynamic as dyn
from pulumi_command import local


class MarkerProvider(dyn.ResourceProvider):
    """Creates and deletes one marker file."""

    def create(self, props):
        pathlib.Path(props["path"]).write_text(props["text"])
        return dyn.CreateResult(id_=props["path"], outs=props)

    def delete(self, id, props):
        pathlib.Path(id).unlink(missing_ok=True)


class Marker(dyn.Resource):
    def __init__(self, name, path, text, opts=None):
        super().__init__(MarkerProvider(), name, {"path": path, "text": text}, opts)


config = pulumi.Config()
marker = Marker("marker", config.require("path"), "cloudrepo smoke")
pulumi.export("path", marker.id)
hello = local.Command("hello", create="echo cloudrepo smoke command")
pulumi.export("hello", hello.stdout)
