"""The preprocessing contract: any image to RGB uint8, TensorFlow's resize bit for bit, and input
conversion without float arithmetic where the quantization allows."""

import io

import numpy as np
import pytest
from conftest import CORAL
from PIL import Image

from edge_runtime import ImageError, load_image, resize
from edge_runtime.model.preprocess import BAND_BYTES, InputConverter, Normalization, center_crop

PHOTOS = ["cat.bmp", "parrot.jpg", "bird.bmp"]
SIZES = [(224, 224), (128, 128), (96, 160), (480, 640), (17, 5)]


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow", reason="the train extra holds TensorFlow, the reference resize")


@pytest.mark.parametrize("photo", PHOTOS)
def test_bilinear_equals_tensorflow2_resize_truncated(tf, photo):
    rgb = load_image(CORAL / photo)
    for size in SIZES:
        ours = resize(rgb, *size)
        ref = tf.image.resize(rgb, size, "bilinear").numpy().astype(np.uint8)
        assert np.array_equal(ours, ref), size


@pytest.mark.parametrize("photo", PHOTOS)
def test_legacy_bilinear_and_nearest_equal_tensorflow(tf, photo):
    rgb = load_image(CORAL / photo)
    for size in SIZES:
        legacy = tf.compat.v1.image.resize_bilinear(rgb[None], size, half_pixel_centers=False).numpy()[0]
        assert np.array_equal(resize(rgb, *size, method="bilinear-legacy"), legacy.astype(np.uint8)), size
        assert np.array_equal(resize(rgb, *size, method="nearest"), tf.image.resize(rgb, size, "nearest").numpy()), size


@pytest.mark.parametrize("method", ["bilinear", "bilinear-legacy"])
def test_four_channel_pixels_resize_to_the_bits_of_their_first_three(method):
    """RGBX (Pillow's own layout) and RGBA are gathered a pixel at a time and interpolated in all
    four channels: what comes out equals the resize of the first three channels, bit for bit, for
    up- and downscales, odd sizes, one band or many (a wide picture), and into an ``out`` buffer."""
    rng = np.random.default_rng(7)
    ins = [(240, 320), (480, 640), (31, 17), (1, 9), (300, 2000), (128, 128), (7, 1)]
    outs = [(128, 128), (224, 224), (96, 160), (1, 1), (333, 17), (480, 640)]
    for h, w in ins:
        rgbx = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgb = np.ascontiguousarray(rgbx[:, :, :3])
        for size in outs:
            want = resize(rgb, *size, method=method)
            assert np.array_equal(resize(rgbx, *size, method=method), want), ((h, w), size)
            out = np.empty((*size, 3), np.uint8)
            assert resize(rgbx, *size, method=method, out=out) is out and np.array_equal(out, want), ((h, w), size)
        shifted = np.frombuffer(b"\0" + rgbx.tobytes(), np.uint8)[1:].reshape(h, w, 4)  # not 4-byte aligned
        assert np.array_equal(resize(shifted, 96, 160, method=method), resize(rgb, 96, 160, method=method))


@pytest.mark.parametrize("channels", [3, 4])
def test_resize_writes_any_out_buffer_it_is_given(channels):
    """An ``out`` that is not contiguous uint8 (a column slice of a larger frame, int8) gets the
    pixels too, rather than a copy of it getting them."""
    img = np.random.default_rng(1).integers(0, 256, (40, 30, channels), dtype=np.uint8)
    want = resize(img, 8, 6)
    big = np.zeros((8, 12, 3), np.uint8)
    assert resize(img, 8, 6, out=big[:, ::2]) is not None and np.array_equal(big[:, ::2], want)
    signed = np.zeros((8, 6, 3), np.int8)
    resize(img, 8, 6, out=signed)
    assert np.array_equal(signed.view(np.uint8), want)


def test_resizing_photos_of_many_sizes_keeps_little_memory():
    """A folder of photos of many sizes must not fill a 512 MB Pi: what the resize keeps per input
    size (its index tables) and what one call uses besides its input and output stay small, and
    its working memory is one block per thread whatever the sizes. (A table per output value and
    whole-picture float buffers held 9 MB per input size for 224.)"""
    import tracemalloc

    rng = np.random.default_rng(0)
    sizes = [(480 + 7 * i, 640 + 11 * i) for i in range(12)] + [(3024, 4032)]
    pictures = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    out = np.empty((224, 224, 3), np.uint8)
    tracemalloc.start()  # numpy reports its arrays' buffers to tracemalloc
    try:
        for rgb in pictures:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            resize(rgb, 224, 224, out=out)
            assert tracemalloc.get_traced_memory()[1] - before < 2_000_000, rgb.shape  # one call's work
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000 + BAND_BYTES  # 13 input sizes' tables, and this thread's working memory


def test_methods_differ_and_unknown_method_is_rejected():
    rgb = load_image(CORAL / "cat.bmp")
    a, b = resize(rgb, 128, 128), resize(rgb, 128, 128, method="pil-bilinear")
    assert a.shape == b.shape == (128, 128, 3) and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="bilinear, bilinear-legacy, nearest, pil-bilinear"):
        resize(rgb, 10, 10, method="bicubic")


def test_center_crop_keeps_the_middle():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255
    crop = center_crop(img, 224, 224)
    assert crop.shape == (100, 100, 3) and crop.min() == 255


def _encode(im: Image.Image, fmt: str, **kw) -> io.BytesIO:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    buf.seek(0)
    return buf


def test_every_mode_becomes_rgb_uint8(tmp_path):
    rgb = np.asarray(Image.open(CORAL / "cat.bmp").convert("RGB").resize((64, 48)))
    base = Image.fromarray(rgb)
    cases = {
        "gray.png": base.convert("L"),
        "rgba.png": base.convert("RGBA"),
        "palette.gif": base.convert("P"),
        "cmyk.jpg": base.convert("CMYK"),
        "bw.png": base.convert("1"),
        "la.png": base.convert("LA"),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        out = load_image(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (48, 64, 3), name
    gray = load_image(tmp_path / "gray.png")
    assert np.array_equal(gray[..., 0], gray[..., 2])
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgb)


def test_palette_with_transparency_raises_no_warning(tmp_path):
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.info["transparency"] = 0
    im.save(tmp_path / "t.png", transparency=0)
    assert load_image(tmp_path / "t.png")[0, 0].tolist() == [255, 0, 0]


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 64 * 32).astype(np.uint16).reshape(32, 64)
    Image.fromarray(a).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out[..., 0].max() == 255 and out[..., 0].min() == 0
    assert np.array_equal(out[..., 0], (a >> 8).astype(np.uint8))


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 2] > 200 and out[35, 10, 0] > 200  # blue on top after rotation


def test_arrays_and_bad_arrays():
    frame = np.zeros((4, 5, 4), np.uint8)
    assert load_image(frame).shape == (4, 5, 3)
    assert load_image(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ImageError, match="uint8"):
        load_image(np.zeros((4, 5, 3), np.float32))


def test_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((CORAL / "parrot.jpg").read_bytes()[:5000])
    with pytest.raises(ImageError, match="broken.jpg"):
        load_image(bad)


def test_input_conversion_is_identity_offset_or_lookup():
    p = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    ident = InputConverter(np.uint8, 1.0, 0, Normalization(0, 1))
    assert ident.kind == "identity" and ident(p) is p
    off = InputConverter(np.int8, 1.0, -128, Normalization(0, 1))
    assert off.kind == "offset -128"
    assert np.array_equal(off(p).astype(int), p.astype(int) - 128)
    coral = InputConverter(np.uint8, 1 / 128, 128, Normalization(128, 128))
    assert coral.kind == "identity"
    lut = InputConverter(np.uint8, 0.02, 3, Normalization(0, 1))
    assert lut.kind == "lookup table"
    assert np.array_equal(lut(p), np.clip(np.round(p / 0.02 + 3), 0, 255).astype(np.uint8))
    f = InputConverter(np.float32, 0.0, 0, None)
    assert f(p).dtype == np.float32 and f(p).min() == -1.0 and f(p).max() == 1.0


def test_a_file_prepared_from_pillows_own_pixels_equals_the_rgb_path(tmp_path, monkeypatch):
    """The Preprocessor reads an RGB file's pixels in Pillow's own 4-byte layout (no copy through
    tobytes): every resize method and crop, at full and draft decode, turned or not, gives the
    tensor that the plain RGB array gives; and where Pillow offers no such view (older Pillow),
    the same tensor comes by the copy."""
    from edge_runtime.model import preprocess
    from edge_runtime.model.preprocess import Preprocessor

    photo = Image.open(CORAL / "parrot.jpg").convert("RGB").resize((640, 480))
    plain, turned = tmp_path / "plain.jpg", tmp_path / "turned.jpg"
    photo.save(plain, quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees
    photo.save(turned, quality=90, exif=exif)
    views = []
    real_view = preprocess._rgbx_view
    monkeypatch.setattr(preprocess, "_rgbx_view", lambda im: views.append(real_view(im)) or views[-1])
    convert = InputConverter(np.dtype(np.uint8), 1.0, 0, None)
    for path in (plain, turned):
        for decode in ("full", "draft"):
            for method in ("bilinear", "bilinear-legacy", "nearest", "pil-bilinear"):
                for crop in ("none", "center"):
                    for size in ((224, 224), (128, 96)):
                        prep = Preprocessor(*size, convert, method, crop, decode)  # type: ignore[arg-type]
                        want = resize(preprocess.load_image_for(path, *size, decode), *size, method, crop)
                        assert np.array_equal(prep(path), want), (path.name, decode, method, crop, size)
                        buf = np.empty((1, *size, 3), np.uint8)
                        prep.into(path, buf)
                        assert np.array_equal(buf[0], want), (path.name, decode, method, crop, size)
    got = [v for v in views if v is not None]
    if hasattr(Image.Image, "__arrow_c_array__"):
        assert got and all(v.shape[2] == 4 for v in got)  # the view was used, not the copy
    monkeypatch.setattr(preprocess, "_rgbx_view", lambda im: None)  # Pillow without the view
    prep = Preprocessor(224, 224, convert)
    assert np.array_equal(prep(plain), resize(load_image(plain), 224, 224))


def test_a_view_of_pillows_pixels_outlives_its_image():
    """The view holds Pillow's memory until the view goes: the image closed and collected, other
    pictures decoded meanwhile, its pixels are unchanged."""
    import gc

    from edge_runtime.model import preprocess

    view = preprocess._decode_file(str(CORAL / "parrot.jpg"), None, rgbx=True)
    if view.shape[2] == 3:
        pytest.skip("this Pillow has no Arrow export (the copy is used)")
    before = view.copy()
    others = [preprocess._decode_file(str(CORAL / p), None, rgbx=True) for p in ("parrot.jpg", "cat.bmp", "bird.bmp") * 5]
    del others
    gc.collect()
    assert np.array_equal(view, before) and not view.flags.writeable
    assert np.array_equal(view[..., :3], load_image(CORAL / "parrot.jpg"))
