"""The data options every program takes (``alc-hf evaluate``, ``alc-hf certify``, ``alc-hf train`` and the recipe),
declared once: the format, its folder, the format's own options and the catalog's seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alc_hf.core.program import check_choice_option
from alc_hf.data.loading import DATA_FORMAT_HELP, DATA_FORMATS, DATA_OPTION_HELP

__all__ = ["DataArguments"]


@dataclass
class DataArguments:
    """Which data, in which format (:func:`alc_hf.data.load_query_label_data` and
    :func:`alc_hf.data.load_evaluation_views` take :meth:`source`)."""

    data: str = field(default="catalog", metadata={"help": f"One of {', '.join(DATA_FORMATS)}. {DATA_FORMAT_HELP}"})
    data_dir: str | None = field(default=None, metadata={"help": "Folder of the data (every format but catalog)."})
    text_fields: list[str] | None = field(default=None, metadata={"help": DATA_OPTION_HELP["text_fields"]})
    query_column: str | None = field(default=None, metadata={"help": DATA_OPTION_HELP["query_column"]})
    label_column: str | None = field(default=None, metadata={"help": DATA_OPTION_HELP["label_column"]})
    query_id_column: str | None = field(default=None, metadata={"help": DATA_OPTION_HELP["query_id_column"]})
    label_id_column: str | None = field(default=None, metadata={"help": DATA_OPTION_HELP["label_id_column"]})
    relevance_column: str | None = field(default=None, metadata={"help": DATA_OPTION_HELP["relevance_column"]})
    catalog_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the built-in catalog's offers, and of the random calibration half (xmc; beir or pairs "
            "without a calibration split)."
        },
    )

    def __post_init__(self) -> None:
        check_choice_option("data", self.data, DATA_FORMATS)

    def source(self) -> dict[str, Any]:
        """The keyword arguments of ``load_query_label_data`` and ``load_evaluation_views`` that name the data."""
        options = {name: getattr(self, name) for name in DATA_OPTION_HELP}
        return {"source": self.data_dir, "data_format": self.data, "seed": self.catalog_seed, **options}
