"""Every public name has a numpydoc docstring; functions with parameters document them."""

import inspect

import pytest

import mixvi

NAMESPACES = [mixvi.model, mixvi.module, mixvi.data, mixvi.pl, mixvi.metrics]


def _public():
    for namespace in NAMESPACES:
        for name in namespace.__all__:
            obj = getattr(namespace, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{namespace.__name__}.{name}", obj
                if inspect.isclass(obj):
                    for attr, member in vars(obj).items():
                        if not attr.startswith("_") and inspect.isfunction(member):
                            yield f"{namespace.__name__}.{name}.{attr}", member


def _documented_params(obj) -> list[str]:
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return []
    return [p for p in params if p not in ("self", "cls") and not p.startswith("_")]


PUBLIC = sorted(_public(), key=lambda item: item[0])


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_names_have_numpydoc_docstrings(name, obj):
    doc = inspect.getdoc(obj)
    assert doc and len(doc.splitlines()[0]) > 10, f"{name} has no summary line"
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = _documented_params(target)
    if inspect.isclass(obj) and issubclass(obj, Exception):
        return
    if params and not any(
        m in name for m in ("forward", "inference", "generative", "loss", "kl_local")
    ):
        assert "Parameters\n----------" in doc, (
            f"{name} has parameters {params} but no Parameters section"
        )
        for param in params:
            if param in ("args", "kwargs"):
                continue
            assert param in doc, f"{name}: parameter {param!r} is not documented"
