"""The references read from a provider blob's opcodes are exactly the ones unpickling looks up, whatever the
pickled data (strings that spell module paths included)."""

from __future__ import annotations

import base64
import collections
import datetime
import fractions
import io
import json
import pathlib
import pickle
from typing import Any

import dill
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider

from providers.pipeline import HostProvider
from tests.fuzzkit import fuzz_settings
from tests.integration.staterefs import NotAReference, Ref, blob_refs, pickle_refs, resolve


class Probe(ResourceProvider):
    """A provider class of an importable module: pickled as a reference to it."""


CLASSES = [
    collections.OrderedDict,
    collections.Counter,
    fractions.Fraction,
    pathlib.PurePosixPath,
    json.JSONDecoder,
    Probe,
]
"""Some from one module: a module's name pickled again is fetched from the memo."""
OBJECTS = [json.dumps, pathlib.PurePosixPath("/a"), fractions.Fraction(1, 3), datetime.date(2026, 1, 2)]
LOOKALIKES = ["providers.tap_port", "TapPortProvider", "providers.tap_port TapPortProvider", "builtins", "k"]
"""Strings that spell references: pickled as data, they are none."""

OLD_TAP_BLOB = "gASVLQAAAAAAAACMEnByb3ZpZGVycy50YXBfcG9ydJSMD1RhcFBvcnRQcm92aWRlcpSTlCmBlC4="
"""The `__provider` of a TapPort as the program of commit d72a8a2 (before the kinds moved to
`providers.kinds`) writes it."""


def looked_up(data: bytes) -> frozenset[Ref]:
    """The references unpickling asks for (dill's own unpickler, as the provider process runs it)."""
    seen: set[Ref] = set()

    class Recording(dill.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            seen.add(Ref(module, name))
            return super().find_class(module, name)

    Recording(io.BytesIO(data)).load()
    return frozenset(seen)


leaves = st.one_of(
    st.integers(),
    st.text(max_size=20),
    st.sampled_from(LOOKALIKES),
    st.sampled_from(CLASSES),
    st.sampled_from(OBJECTS),
    st.builds(Probe),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.sampled_from(LOOKALIKES), inner, max_size=3),
    ),
    max_leaves=12,
)


@fuzz_settings(ci=150, long=2000)
@given(trees, st.sampled_from(["sdk", *range(pickle.HIGHEST_PROTOCOL + 1)]))
@example([collections.OrderedDict, collections.Counter], "sdk")
def test_the_references_read_are_those_unpickling_looks_up(tree: Any, protocol: str | int) -> None:
    """As the SDK pickles a provider, and in every protocol (GLOBAL before protocol 4, STACK_GLOBAL since)."""
    if protocol == "sdk":
        data = base64.b64decode(serialize_provider(tree))
    else:
        data = dill.dumps(tree, protocol=protocol, recurse=True)
    assert pickle_refs(data) == looked_up(data)


def test_a_blob_written_before_the_kinds_moved_names_the_old_module_path_which_still_resolves() -> None:
    refs = blob_refs(OLD_TAP_BLOB)
    assert refs == {Ref("providers.tap_port", "TapPortProvider")}
    assert [str(r) for r in refs] == ["providers.tap_port.TapPortProvider"]
    (ref,) = refs
    cls = resolve(ref)
    assert isinstance(cls, type)
    loaded = dill.loads(base64.b64decode(OLD_TAP_BLOB))  # as the provider process loads it
    assert isinstance(loaded, HostProvider) and vars(loaded) == {"kind": "TapPort"}


def test_a_stack_global_not_fed_by_two_strings_is_refused() -> None:
    # PROTO 4, EMPTY_TUPLE, EMPTY_TUPLE, STACK_GLOBAL, STOP: the stack holds no module and name
    with pytest.raises(NotAReference):
        pickle_refs(b"\x80\x04))\x93.")
