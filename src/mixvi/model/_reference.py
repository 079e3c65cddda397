"""scArches query mapping, with the safe model-file check before scvi-tools reads a file."""

from __future__ import annotations

import os

from anndata import AnnData
from scvi.model.base import ArchesMixin


class ReferenceMappingMixin(ArchesMixin):
    """scArches query mapping (scvi-tools' ArchesMixin) with the safe model-file check.

    A reference model given as a path is checked like :meth:`MixviModel.load` before
    scvi-tools reads it.
    """

    @classmethod
    def load_query_data(cls, adata: AnnData | None = None, reference_model=None, *args, **kwargs):
        """Map query data onto a trained reference; see :meth:`scvi.model.base.ArchesMixin.load_query_data`.

        Parameters
        ----------
        adata
            Query AnnData with the reference's features.
        reference_model
            A trained model, or the directory it was saved to (checked before loading).
        *args, **kwargs
            Passed to scvi-tools.

        Returns
        -------
        The query model. Its :meth:`train` uses ``weight_decay=0``, so that the frozen
        reference weights do not move.
        """
        model = super().load_query_data(adata, _checked_reference(reference_model), *args, **kwargs)
        # scArches freezes the reference's weights by zeroing their gradients, but Adam's
        # weight decay still moves them: with the GMVAE's eps of 1e-8, decay alone makes a
        # near full-size Adam step, which carried every query cell into one cluster.
        # scvi-tools' tutorials train query models with weight_decay=0 for the same reason.
        model._plan_defaults = {"weight_decay": 0.0}
        return model._restore_tables()

    @staticmethod
    def prepare_query_anndata(adata: AnnData, reference_model, *args, **kwargs):
        """Pad and order the query's features like the reference's; see scvi-tools.

        Parameters
        ----------
        adata
            Query AnnData.
        reference_model
            A trained model, or the directory it was saved to (checked before loading).
        *args, **kwargs
            Passed to scvi-tools.
        """
        return ArchesMixin.prepare_query_anndata(
            adata, _checked_reference(reference_model), *args, **kwargs
        )


def _checked_reference(reference_model):
    if isinstance(reference_model, str | os.PathLike):
        from ._safe_load import check_model_file

        check_model_file(reference_model)
        return os.fspath(reference_model)
    return reference_model
