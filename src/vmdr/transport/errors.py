"""Errors of the wire (area 03).

    VmdrError
    └── TransportError          VMDR-E0300
        ├── FrameCorrupt        VMDR-E0301  a header CRC or payload checksum failed
        ├── FrameTooLarge       VMDR-E0302
        ├── UnsupportedVersion  VMDR-E0303
        ├── TruncatedStream     VMDR-E0304
        ├── UnknownFrameType    VMDR-E0305
        └── ProtocolError       VMDR-E0306

(Authentication and client errors, E035x, live in ``auth`` and ``client``.)
A service answers all of these with 400: the request's body was bad, and
nothing of the bad frame was written.
"""

from __future__ import annotations

from vmdr.model.errors import VmdrError

__all__ = [
    "FrameCorrupt",
    "FrameTooLarge",
    "ProtocolError",
    "StreamIdle",
    "TransportError",
    "TruncatedStream",
    "UnknownFrameType",
    "UnsupportedVersion",
]


class TransportError(VmdrError):
    code = "VMDR-E0300"
    http_status = 400
    msg = "{detail}"


class FrameCorrupt(TransportError):
    code = "VMDR-E0301"
    msg = "frame at stream offset {offset}: the {what} does not match"
    fix = (
        "The data was damaged between the sender's encoder and this decoder; nothing of that "
        "frame was applied. The sender resends from the last acknowledged offset."
    )


class FrameTooLarge(TransportError):
    code = "VMDR-E0302"
    msg = "frame at stream offset {offset} announces {size} bytes; the limit is {limit}"
    fix = "The sender must split data into frames of at most {limit} bytes."


class UnsupportedVersion(TransportError):
    code = "VMDR-E0303"
    msg = "frame version {version} is not supported (this side speaks {supported})"
    fix = "Run the same vmdr version on the process server and the master target."


class TruncatedStream(TransportError):
    code = "VMDR-E0304"
    msg = "the stream ended inside a frame at offset {offset} ({pending} bytes pending)"
    fix = "The sender stopped mid-frame; it resends from the last acknowledged offset."


class UnknownFrameType(TransportError):
    code = "VMDR-E0305"
    msg = "unknown frame type {type} at stream offset {offset}"
    fix = "Run the same vmdr version on the process server and the master target."


class ProtocolError(TransportError):
    code = "VMDR-E0306"
    msg = "{detail}"
    fix = "Run the same vmdr version on both sides; report a bug if they match."


class StreamIdle(TransportError):
    code = "VMDR-E0307"
    http_status = 408
    msg = "the sender sent nothing for {seconds:g} s; the stream was closed"
    fix = "The sender resumes from the last acknowledged offset; check the network between them."
