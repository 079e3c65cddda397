"""Sphinx configuration: scverse look (book theme), MyST + notebooks, numpydoc via napoleon."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))

import mixvi  # noqa: E402

project = "mixvi"
author = "mixvi developers"
copyright = "2026, mixvi developers"
release = version = mixvi.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "sphinxcontrib.bibtex",
]
# citations (``:cite:p:`Jiang2017```) resolve against one file; the References page lists them
bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_custom_sections = [("Raises", "params_style")]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
# The committed notebooks carry the outputs of their full-size run; the site shows those.
nb_execution_mode = "off"
nb_merge_streams = True

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "tutorials/README.md"]
# autosummary writes its stubs as reStructuredText: without ".rst" here they would be read
# as MyST text and the API pages would show the raw directives
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

html_theme = "sphinx_book_theme"
html_title = "mixvi"
html_static_path = ["_static"]
html_theme_options = {
    "repository_url": "https://github.com/scverse/mixvi",
    "use_repository_button": True,
    "path_to_docs": "docs",
}
# one search box: the header's search button (the book theme also puts a field in the sidebar)
html_sidebars = {"**": ["navbar-logo.html", "icon-links.html", "sbt-sidebar-nav.html"]}
# copy code without prompts or the outputs shown after them
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
# Inherited scvi-tools/Lightning docstrings use their own cross-references and roles.
suppress_warnings = ["myst.header", "autosummary.import_cycle"]
