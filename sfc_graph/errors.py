"""One exception root for everything a user can get wrong or run into.

The CLI turns any :class:`SfcError` into one sentence on stderr and a non-zero exit; anything else is a
bug and keeps its traceback.
"""


class SfcError(Exception):
    """Root of all sfc-graph errors that are the user's to fix (input, configuration, environment)."""


class BundleError(SfcError):
    """A circuit bundle is missing, malformed or fails validation."""


class StoreError(SfcError):
    """The circuit store cannot be opened, reached or written."""


class StoreDataLost(StoreError):
    """A store whose database went missing, empty or lost its tables (see store/ladybug_health.py)."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached or refuses our credentials."""


class CircuitNotFound(SfcError):
    """A circuit id that is not in the store."""


class QueryError(SfcError):
    """An unknown query, a bad parameter, or a query the database refused."""


class ComputeError(SfcError):
    """Circuit discovery cannot run on the given model, dictionaries or task."""


class DictionaryError(ComputeError):
    """A dictionary (SAE / transcoder) file is unreadable or does not fit its site."""


class TaskError(ComputeError):
    """A task file is missing, empty or inconsistent with the tokenizer."""


class ExportError(SfcError):
    """A graph cannot be exported as asked, or a query result names no node of the circuit."""


class ReportError(SfcError):
    """A comparison report cannot be built from what was asked."""


class DiagramError(SfcError):
    """A circuit diagram cannot be drawn as asked."""


class GraphvizMissing(DiagramError):
    """Graphviz's ``dot`` program is not installed."""


class ZooError(SfcError):
    """The toy zoo's artefacts are missing or fail their quality bars."""


class InteropError(SfcError):
    """A file in another tool's format (attribution-graph JSON, a reference ``.pt`` circuit) cannot be read
    or written as asked."""


class FeatureError(SfcError):
    """A feature id, label, dashboard corpus or explanations file that cannot be used."""


class DestinationError(SfcError):
    """An output path that cannot or must not be written (a file in the way, no permission, not ours)."""


class PathBudgetExceeded(QueryError):
    """The best-first path search created more partial paths than its budget allows (queries/post.py turns it
    into a sentence naming the parameters to change)."""

    def __init__(self, budget: int, found: int):
        super().__init__(f"more than {budget} partial paths ({found} complete found)")
        self.budget, self.found = budget, found
