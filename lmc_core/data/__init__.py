"""Corpora for language-model training: Shakespeare (offline default), PTB, Hugging Face."""

# --- corpus, vocabulary and Shakespeare parsing (lmc_core.data.corpus / vocab / shakespeare)
from .corpus import CORPORA, LEVELS, Corpus, DataUnavailableError, leading_lines, line_end_id, load_corpus, source_lines
from .shakespeare import GENRES, shakespeare_plays, split_plays, strip_markup
from .vocab import EOS, UNK, Vocab, char_tokenize, word_tokenize

__all__ = [
    "CORPORA",
    "LEVELS",
    "Corpus",
    "DataUnavailableError",
    "load_corpus",
    "leading_lines",
    "line_end_id",
    "source_lines",
    "GENRES",
    "shakespeare_plays",
    "split_plays",
    "strip_markup",
    "EOS",
    "UNK",
    "Vocab",
    "char_tokenize",
    "word_tokenize",
    "windows",
]

# --- batching / loaders (lmc_core.data.loader): imports added by the loader's author below
from .loader import windows
