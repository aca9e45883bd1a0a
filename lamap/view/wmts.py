"""The viewer's tiles as an OGC WMTS 1.0.0 service (RESTful): its capabilities document.

GIS clients (QGIS, ArcGIS, OpenLayers) read ``/wmts/1.0.0/WMTSCapabilities.xml`` and then
fetch the same XYZ tiles the page shows, through the ``ResourceURL`` template, with the
date as the ``Time`` dimension, on the ``WebMercatorQuad`` tile matrix set (OGC's
GoogleMapsCompatible well-known scale set), as morecantile defines it.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

import morecantile

from lamap.view.tiles import StoreTiles

__all__ = ["MAX_ZOOM", "capabilities"]

#: Deepest zoom offered (about 0.3 m per pixel: far below the 10 m pixels).
MAX_ZOOM = 19
_WMTS = "http://www.opengis.net/wmts/1.0"
_OWS = "http://www.opengis.net/ows/1.1"
_LAYERS = {"lai": "Leaf area index (m2 m-2)", "source": "Source of the LAI: observed, filled"}


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    namespace = _OWS if tag.startswith("ows:") else _WMTS
    element = ET.SubElement(parent, f"{{{namespace}}}{tag.removeprefix('ows:')}", attrs)
    if text is not None:
        element.text = text
    return element


def capabilities(tiles: StoreTiles, base_url: str) -> bytes:
    """Return the WMTS capabilities XML of a store served at ``base_url`` (ends with ``/``)."""
    ET.register_namespace("", _WMTS)
    ET.register_namespace("ows", _OWS)
    root = ET.Element(f"{{{_WMTS}}}Capabilities", {"version": "1.0.0"})
    service = _sub(root, "ows:ServiceIdentification")
    _sub(service, "ows:Title", f"lamap view of {tiles.store.url}")
    _sub(service, "ows:ServiceType", "OGC WMTS")
    _sub(service, "ows:ServiceTypeVersion", "1.0.0")
    contents = _sub(root, "Contents")
    west, south, east, north = tiles.info()["data_bounds"]
    dates = [day.isoformat() for day in tiles.dates]
    for name, title in _LAYERS.items():
        layer = _sub(contents, "Layer")
        _sub(layer, "ows:Title", title)
        box = _sub(layer, "ows:WGS84BoundingBox")
        _sub(box, "ows:LowerCorner", f"{west} {south}")
        _sub(box, "ows:UpperCorner", f"{east} {north}")
        _sub(layer, "ows:Identifier", name)
        _sub(_sub(layer, "Style", isDefault="true"), "ows:Identifier", "default")
        _sub(layer, "Format", "image/png")
        time = _sub(layer, "Dimension")
        _sub(time, "ows:Identifier", "Time")
        _sub(time, "Default", dates[-1] if dates else "")
        for day in dates:
            _sub(time, "Value", day)
        _sub(_sub(layer, "TileMatrixSetLink"), "TileMatrixSet", "WebMercatorQuad")
        template = f"{base_url}tiles/{name}/{{Time}}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png"
        _sub(layer, "ResourceURL", format="image/png", resourceType="tile", template=template)
    _tile_matrix_set(contents)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _tile_matrix_set(contents: ET.Element) -> None:
    tms = morecantile.tms.get("WebMercatorQuad")
    matrix_set = _sub(contents, "TileMatrixSet")
    _sub(matrix_set, "ows:Identifier", "WebMercatorQuad")
    _sub(matrix_set, "ows:SupportedCRS", "urn:ogc:def:crs:EPSG::3857")
    _sub(matrix_set, "WellKnownScaleSet", "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")
    for zoom in range(MAX_ZOOM + 1):
        level = tms.matrix(zoom)
        matrix = _sub(matrix_set, "TileMatrix")
        _sub(matrix, "ows:Identifier", str(zoom))
        _sub(matrix, "ScaleDenominator", repr(float(level.scaleDenominator)))
        x, y = level.pointOfOrigin
        _sub(matrix, "TopLeftCorner", f"{x!r} {y!r}")
        _sub(matrix, "TileWidth", str(level.tileWidth))
        _sub(matrix, "TileHeight", str(level.tileHeight))
        _sub(matrix, "MatrixWidth", str(level.matrixWidth))
        _sub(matrix, "MatrixHeight", str(level.matrixHeight))
