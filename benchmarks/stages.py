"""Where one ``convtool filter`` run spends its time, stage by stage (section 2's breakdown).

    python benchmarks/stages.py IN.png SPEC RUNS

Runs the stages of ``convtool filter IN.png -k SPEC -o out.png`` one after the other in
this process and prints, as JSON, the median seconds of each over RUNS runs: the imports a
filter run makes, read-ahead (what the command's reading thread does beside those imports:
read the file, inflate the PNG's pixel stream), decode (what is left for the main thread
after it: Pillow's header and metadata, the rows unfiltered), decode alone (the whole decode
without a read-ahead, as a library call or a batch worker makes it), convert (to float channel planes; for 8 bits in and out, as the command does, only the
orientation and alpha split of the uint8 samples), filter (the chain; for 8 bits in and
out the compiled integer kernels, or float32 rounded band by band), map (range mapping, rounding
and the cast, alone, one thread), encode (the PNG writer into memory: it maps each band on
its own thread, then filters and deflates it, so map is inside this figure too), write
(the atomic write of those bytes: temporary file, fsync, rename). Stages run apart here; in
the command the encoder writes straight into the temporary file.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    source, spec, runs = Path(argv[0]), argv[1], int(argv[2])
    sys.path.insert(0, str(ROOT))
    start = time.perf_counter()
    from convtool.batch import worker  # what a one-file run imports
    from convtool.images import api, codecs, encoders, ranges, readahead, reading
    from convtool.images import image as image_module
    from convtool.images.atomic import atomic_write
    from convtool.pipeline import Chain, parse_steps

    imports = time.perf_counter() - start
    chain = Chain(parse_steps([spec]))
    times: dict[str, list[float]] = {}
    out = source.with_name("stages-out.png")

    def timed(name, fn, *args):
        begin = time.perf_counter()
        result = fn(*args)
        times.setdefault(name, []).append(time.perf_counter() - begin)
        return result

    settings = worker.Settings(chain=chain)
    route = worker.uint8_route(settings, "png")  # 8 bits to 8 bits without floats?
    for _ in range(runs):
        timed("decode alone", codecs.decode, source, str(source), None)
        readahead._ahead = None  # as the command does it, once per process
        timed("read-ahead", _read_ahead, readahead, source)
        decoded = timed("decode", codecs.decode, source, str(source), None)
        if route and decoded.depth == 8:  # as batch.process: uint8 samples, no float image
            image = timed("convert", _samples_of, decoded, str(source))
            work_dtype = None if route == "integer" else route
            filtered = timed("filter", _uint8_filter, chain, image, work_dtype)
        else:
            precision = image_module.PRECISIONS["single"]
            image = timed("convert", reading.to_image, decoded, str(source), precision, False)
            filtered = timed("filter", chain.apply_to, image)
        depth = api.output_depth("png", filtered.depth, None)
        samples = ranges.Samples(filtered.pixels, filtered.alpha, filtered.depth, depth, None)
        timed("map", samples.whole)
        encoding = encoders.Encoding([], depth, 1, samples=[samples])
        buffer = io.BytesIO()
        timed("encode", encoders.ENCODERS["png"], buffer, encoding)
        data = buffer.getvalue()
        timed("write", atomic_write, str(out), lambda f, data=data: f.write(data))
    out.unlink(missing_ok=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({"imports": imports, **medians}))
    return 0


def _read_ahead(readahead, source):
    readahead.start(str(source), None)
    readahead._ahead.done.wait()


def _samples_of(decoded, name):
    from convtool.images import api, reading

    array = reading.apply_orientation(decoded.array, decoded.orientation)
    alpha = array[:, :, -1] if decoded.has_alpha else None
    pixels = array[:, :, :-1] if decoded.has_alpha else array
    return api.Image(pixels, alpha, 8, decoded.format, name, decoded.metadata)


def _uint8_filter(chain, image, work_dtype):
    import dataclasses

    pixels, alpha = chain.apply_uint8(image.pixels, image.alpha, work_dtype)
    return dataclasses.replace(image, pixels=pixels, alpha=alpha)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
