"""The simulated backend's output files: a small placeholder of the job's output type, made
on the fly from the job's seed (nothing is stored), served tenant-checked by
`GET /api/v1/generations/<id>/output/<id>.<ext>` (generations/api/output_views.py).

PNG for images (a solid colour of the seed's hue, as the web preview), WAV for audio (half a
second of a tone), MP4 for video (an ISO-BMFF file with its header and no track) and GLB for 3D
(a glTF binary with an empty scene). Any other type is served as PNG.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import struct
import wave
import zlib

# output type → (file extension, content type)
KINDS = {
    "image": ("png", "image/png"),
    "audio": ("wav", "audio/wav"),
    "video": ("mp4", "video/mp4"),
    "3d": ("glb", "model/gltf-binary"),
}


def extension(kind: str) -> str:
    return KINDS.get(kind, KINDS["image"])[0]


def placeholder(kind: str, seed) -> tuple[bytes, str]:
    """(the file's bytes, its content type) for an output of `kind` drawn from `seed`."""
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
    ext, content_type = KINDS.get(kind, KINDS["image"])
    make = {"png": _png, "wav": _wav, "mp4": _mp4, "glb": _glb}[ext]
    return make(seed), content_type


def solid_png(rgb: tuple[int, int, int], size: int) -> bytes:
    """A solid-colour PNG, size × size (also the GPU node simulator's output files)."""
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _png(seed: int, size: int = 64) -> bytes:
    hue = (seed * 137) % 360  # the web preview's hue for this seed
    r, g, b = (round(c * 255) for c in colorsys.hsv_to_rgb(hue / 360, 0.45, 0.85))
    return solid_png((r, g, b), size)


def _wav(seed: int, rate: int = 8000, seconds: float = 0.5) -> bytes:
    frequency = 220 + seed % 660
    frames = b"".join(
        struct.pack("<h", int(3000 * math.sin(2 * math.pi * frequency * i / rate)))
        for i in range(int(rate * seconds))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def _box(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + tag + payload


def _mp4(seed: int) -> bytes:
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _box(
        b"mvhd",
        struct.pack(">B3xIIII", 0, 0, 0, 1000, 0)  # version, flags, times, timescale, duration
        + struct.pack(">IH10x", 0x10000, 0x100)  # rate 1.0, volume 1.0
        + matrix
        + bytes(24)
        + struct.pack(">I", 1),  # next track id
    )
    return ftyp + _box(b"moov", mvhd)


def _glb(seed: int) -> bytes:
    document = json.dumps({"asset": {"version": "2.0", "generator": "gpu-credits simulated"}})
    data = document.encode()
    data += b" " * (-len(data) % 4)
    chunk = struct.pack("<I", len(data)) + b"JSON" + data
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunk)) + chunk
