"""Line-aware, safe reading of an XML configuration file into a small immutable element tree.

`defusedxml.sax` is used rather than `defusedxml.ElementTree` because its locator gives the line
of every start tag and of every piece of text, which the error messages need. Its protections
stay on: entity declarations (billion laughs, external entities) and external references are
refused. A plain `<!DOCTYPE safe>`, as SafeKit's templates start, is accepted.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from xml.sax import SAXParseException
from xml.sax.handler import ContentHandler
from xml.sax.xmlreader import AttributesImpl, InputSource, Locator

import defusedxml.sax  # type: ignore[import-untyped, unused-ignore]
from defusedxml import DefusedXmlException  # type: ignore[import-untyped, unused-ignore]

from safekit.config.errors import ConfigError

# Configuration files are a few kilobytes; refusing huge input bounds memory and parse time.
MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class XmlElement:
    """One element: tag, attributes in file order, line of its start tag, children and text."""

    tag: str
    attributes: Mapping[str, str]
    line: int
    children: tuple[XmlElement, ...] = ()
    # (line where the piece starts, text) in document order; kept apart so that offsets in the
    # joined text can be mapped back to lines exactly (e.g. for failover rules).
    text_pieces: tuple[tuple[int, str], ...] = field(default=(), repr=False)

    @property
    def text(self) -> str:
        return "".join(piece for _, piece in self.text_pieces)

    def line_at(self, offset: int) -> int:
        """Line of the character at `offset` in `text`."""
        start = 0
        for line, piece in self.text_pieces:
            if offset < start + len(piece):
                return line + piece.count("\n", 0, offset - start)
            start += len(piece)
        return (
            self.text_pieces[-1][0] + self.text_pieces[-1][1].count("\n") if self.text_pieces else self.line
        )


@dataclass
class _Open:
    tag: str
    attributes: dict[str, str]
    line: int
    children: list[XmlElement] = field(default_factory=list)
    text: list[tuple[int, str]] = field(default_factory=list)

    def close(self) -> XmlElement:
        return XmlElement(
            self.tag, MappingProxyType(self.attributes), self.line, tuple(self.children), tuple(self.text)
        )


class _TreeBuilder(ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.locator: Locator | None = None
        self.stack: list[_Open] = []
        self.root: XmlElement | None = None

    def line(self) -> int:
        return (self.locator.getLineNumber() or 0) if self.locator is not None else 0

    def setDocumentLocator(self, locator: Locator) -> None:
        self.locator = locator

    def startElement(self, name: str, attrs: AttributesImpl) -> None:
        self.stack.append(_Open(name, dict(attrs.items()), self.line()))

    def endElement(self, name: str) -> None:
        element = self.stack.pop().close()
        if self.stack:
            self.stack[-1].children.append(element)
        else:
            self.root = element

    def characters(self, content: str) -> None:
        if self.stack:
            self.stack[-1].text.append((self.line(), content))


def read_xml(data: str | bytes, filename: str) -> XmlElement:
    """Parse `data` and return its root element; raise ConfigError naming file:line otherwise.

    Bytes are decoded as the XML declaration says (UTF-8 by default); text is taken as is.
    """
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(filename, 0, None, f"file is larger than {MAX_CONFIG_BYTES} bytes")
    builder = _TreeBuilder()
    parser = defusedxml.sax.make_parser()
    parser.setContentHandler(builder)
    # Entities are the attack surface (entity expansion, external files); a bare DOCTYPE is not.
    parser.forbid_dtd = False
    parser.forbid_entities = True
    parser.forbid_external = True
    source = InputSource(filename)
    if isinstance(data, bytes):
        source.setByteStream(io.BytesIO(data))
    else:
        source.setCharacterStream(io.StringIO(data))
    try:
        parser.parse(source)
    except SAXParseException as exc:
        raise ConfigError(
            filename, exc.getLineNumber() or 0, None, f"not well-formed XML: {exc.getMessage()}"
        ) from None
    except DefusedXmlException as exc:
        raise ConfigError(
            filename,
            builder.line(),
            None,
            f"refused: {type(exc).__name__} - entity declarations and external references are not allowed "
            "in configuration files (use <macro> for shared values)",
        ) from None
    except (LookupError, ValueError) as exc:
        # The text cannot be decoded: an encoding the declaration names that Python does not
        # know (LookupError) or expat cannot use (multi-byte: ValueError), bytes invalid in it
        # (UnicodeError), or text that cannot be UTF-8 (a lone surrogate).
        raise ConfigError(
            filename,
            builder.line(),
            None,
            f"cannot decode the text ({exc}); save the file as UTF-8 and declare no other encoding",
        ) from None
    if builder.root is None:  # pragma: no cover - expat reports an empty document as not well-formed
        raise ConfigError(filename, 0, None, "no root element")
    return builder.root
