"""Renderer: colours, alpha/mask/depth, order-independent transparency (against a sorted reference), cameras."""

import math
import threading

import numpy as np
import pytest
import trimesh

import helix4d.render.context as render_context
from helix4d.errors import BackendUnavailableError, InputError
from helix4d.render import Camera, Renderer, front_camera, orbit_cameras, render_turntable

SIZE = 96


def painted(mesh: trimesh.Trimesh, rgba, metallic: float = 0.0, roughness: float = 0.6) -> trimesh.Trimesh:
    mesh.visual.vertex_colors = np.tile(np.array(rgba, dtype=np.uint8), (len(mesh.vertices), 1))
    mesh.vertex_attributes["metallic"] = np.full(len(mesh.vertices), metallic, dtype=np.float32)
    mesh.vertex_attributes["roughness"] = np.full(len(mesh.vertices), roughness, dtype=np.float32)
    return mesh


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(SIZE, SIZE)
    yield r
    r.release()


def sphere(radius=0.3, rgba=(255, 0, 0, 255), center=(0.0, 0.0, 0.0)):
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    mesh.apply_translation(center)
    return painted(mesh, rgba)


def quad(z: float, half: tuple[float, float], center: tuple[float, float], rgba) -> trimesh.Trimesh:
    """An axis-aligned rectangle facing +z (towards the default camera)."""
    (hx, hy), (cx, cy) = half, center
    verts = np.array([[cx - hx, cy - hy, z], [cx + hx, cy - hy, z], [cx + hx, cy + hy, z], [cx - hx, cy + hy, z]])
    return painted(trimesh.Trimesh(verts, [[0, 1, 2], [0, 2, 3]], process=False), rgba)


def test_red_sphere_centre_red_corners_transparent(renderer):
    img = renderer.render(sphere(), Camera())
    assert img.shape == (SIZE, SIZE, 4) and img.dtype == np.uint8
    r, g, b, a = img[SIZE // 2, SIZE // 2].astype(int)
    assert a == 255 and r > 150 and g < 90 and b < 90
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert img[y, x, 3] == 0


def test_background_colour_fills_empty_pixels(renderer):
    img = renderer.render(sphere(), Camera(), background=(0.0, 1.0, 0.0, 1.0))
    assert tuple(img[0, 0]) == (0, 255, 0, 255)
    assert img[SIZE // 2, SIZE // 2, 0] > 150  # the sphere is still on top


def test_mask_alpha_and_depth_match_sphere_silhouette(renderer):
    cam = Camera(eye=(0.0, 0.0, 2.0))
    radius = 0.3
    out = renderer.render_maps(sphere(radius), cam)
    assert np.array_equal(out.mask, out.rgba[..., 3] > 0)
    assert np.all(out.rgba[..., 3][out.mask] == 255)  # opaque: full alpha inside the silhouette
    # Silhouette of a sphere at distance d: a disc of radius f * tan(asin(r / d)) pixels.
    f = cam.intrinsics(SIZE, SIZE)[1, 1]
    disc = f * math.tan(math.asin(radius / 2.0))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    inside = np.hypot(xx - SIZE / 2, yy - SIZE / 2) < disc - 1.0
    outside = np.hypot(xx - SIZE / 2, yy - SIZE / 2) > disc + 1.0
    assert out.mask[inside].all() and not out.mask[outside].any()
    assert out.depth[SIZE // 2, SIZE // 2] == pytest.approx(2.0 - radius, rel=0.01)
    assert np.all(out.depth[~out.mask] == 0.0)


def test_opaque_box_visible_inside_transparent_sphere(renderer):
    shell = sphere(0.45, (40, 90, 255, 77))  # alpha 0.3
    box = painted(trimesh.creation.box(extents=(0.3, 0.3, 0.3)), (255, 220, 0, 255))
    cam, c = front_camera(), SIZE // 2
    with_box = renderer.render([shell, box], cam).astype(int)
    shell_only = renderer.render([shell], cam).astype(int)
    box_only = renderer.render([box], cam).astype(int)
    assert np.abs(with_box[c, c, :3] - shell_only[c, c, :3]).max() > 30
    assert with_box[c, c, 0] > shell_only[c, c, 0] + 30  # the yellow box shows through the blue shell ...
    assert with_box[c, c, 2] > box_only[c, c, 2] + 20  # ... tinted by the shell: a blend of both
    assert with_box[c, c, 3] == 255
    # Two walls of alpha 0.3 and nothing behind: 1 - 0.7^2 = 0.51.
    assert shell_only[c, c, 3] == pytest.approx(255 * 0.51, abs=3)


def test_depth_peeling_matches_sorted_reference(renderer):
    cam = Camera(eye=(0.0, 0.0, 2.0))
    layers = [  # (z, half extents, centre, rgba): overlapping in the middle, listed out of depth order
        (0.0, (0.3, 0.3), (0.0, 0.0), (255, 40, 40, 128)),
        (0.25, (0.35, 0.15), (0.1, 0.05), (40, 255, 40, 90)),
        (-0.3, (0.4, 0.4), (-0.05, 0.0), (40, 40, 255, 255)),
        (0.15, (0.15, 0.35), (-0.1, -0.05), (250, 250, 40, 180)),
    ]
    meshes = [quad(z, h, c, rgba) for z, h, c, rgba in layers]
    peeled = renderer.render(meshes, cam).astype(np.float64) / 255.0
    reversed_order = renderer.render(meshes[::-1], cam).astype(np.float64) / 255.0
    assert np.abs(peeled - reversed_order).max() <= 1.0 / 255.0 + 1e-9

    # Reference: each layer alone (opaque, same shading) gives colour + coverage; composite back to front in numpy.
    premult = np.zeros((SIZE, SIZE, 4))
    for z, h, c, rgba in sorted(layers, key=lambda layer: layer[0]):
        alone = renderer.render(quad(z, h, c, (*rgba[:3], 255)), cam).astype(np.float64) / 255.0
        a = (alone[..., 3] > 0) * rgba[3] / 255.0  # (H, W)
        premult[..., :3] = alone[..., :3] * a[..., None] + (1.0 - a[..., None]) * premult[..., :3]
        premult[..., 3] = a + (1.0 - a) * premult[..., 3]
    ref_alpha = premult[..., 3]
    covered = ref_alpha > 0.2
    ref_rgb = premult[..., :3][covered] / ref_alpha[covered][:, None]
    assert covered.sum() > 0.2 * SIZE * SIZE
    assert np.abs(peeled[..., 3] - ref_alpha).max() < 2.5 / 255.0
    assert np.abs(peeled[..., :3][covered] - ref_rgb).max() < 4.0 / 255.0


def test_camera_target_projects_to_image_centre():
    cams = [front_camera(), *orbit_cameras(5, radius=3.0, elevation_deg=35.0)]
    for cam in [*cams, Camera(eye=(1, 2, 3), target=(0.2, -0.1, 0.3))]:
        px = cam.project(np.array([cam.target]), 640, 480)[0]
        assert px == pytest.approx((320.0, 240.0), abs=1e-6)
        # The view matrix maps the target onto the camera's -z axis.
        p = cam.view() @ np.array([*cam.target, 1.0])
        assert abs(p[0]) < 1e-9 and abs(p[1]) < 1e-9 and p[2] < 0


@pytest.mark.parametrize("size", [(SIZE, SIZE), (120, 72)])
def test_intrinsics_agree_with_rasteriser(size):
    width, height = size
    cam = Camera(eye=(0.4, 0.5, 2.0), target=(0.0, 0.1, 0.0), fov_deg=35.0)
    point = np.array([0.25, -0.15, 0.1])  # off-centre, up is +y so it lands low-right in the image
    renderer = Renderer(width, height)
    try:
        out = renderer.render_maps(sphere(0.04, center=point), cam)
    finally:
        renderer.release()
    assert out.rgba.shape == (height, width, 4)
    ys, xs = np.nonzero(out.mask)
    centroid = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    expected = cam.project(point[None], width, height)[0]
    assert np.abs(centroid - expected).max() < 0.75
    assert expected[0] > width / 2 and expected[1] > height / 2


def test_orbit_cameras_count_radius_and_front():
    cams = orbit_cameras(16, radius=2.5, elevation_deg=30.0)
    assert len(cams) == 16
    for cam in cams:
        assert np.linalg.norm(cam.eye) == pytest.approx(2.5)
        assert cam.eye[1] == pytest.approx(2.5 * math.sin(math.radians(30.0)))
    assert cams[0].eye[0] == pytest.approx(0.0, abs=1e-12) and cams[0].eye[2] > 0  # view 0 looks at the front
    with pytest.raises(InputError):
        Camera(eye=(0.0, 0.0, 0.0))


def test_turntable_several_meshes_and_textured_input(renderer):
    box = trimesh.creation.box(extents=(0.3, 0.3, 0.3))
    uv = np.random.default_rng(0).random((len(box.vertices), 2))
    texture = np.zeros((4, 4, 3), dtype=np.uint8)
    texture[...] = (0, 0, 255)
    from PIL import Image

    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture))
    views = render_turntable([box, sphere(0.15, center=(0.3, 0.0, 0.0))], count=4, size=SIZE, renderer=renderer)
    assert views.shape == (4, SIZE, SIZE, 4)
    c = SIZE // 2
    assert views[0, c, c, 2] > views[0, c, c, 0] + 40  # textured box converted to (blue) vertex colours
    assert not np.array_equal(views[0], views[1])  # the red sphere moves around the box


def test_missing_egl_raises_backend_error(monkeypatch):
    import moderngl

    def broken(*args, **kwargs):
        raise Exception("libEGL.so: cannot open shared object file")

    monkeypatch.setattr(render_context, "_local", threading.local())  # no context in this thread yet
    monkeypatch.setattr(moderngl, "create_standalone_context", broken)
    with pytest.raises(BackendUnavailableError, match="apt-get install -y libegl1"):
        render_context.gl_context()


def test_each_thread_renders_with_its_own_context():
    mesh = sphere()
    results = []

    def render() -> None:
        results.append(Renderer(32, 32).render([mesh], front_camera())[16, 16])

    render()
    worker = threading.Thread(target=render)
    worker.start()
    worker.join()
    assert len(results) == 2 and np.array_equal(results[0], results[1]) and results[0][3] == 255


def test_forked_process_gets_clear_error_instead_of_hang(monkeypatch):
    monkeypatch.setattr(render_context, "_created_pid", -1)  # "made by another process"
    with pytest.raises(BackendUnavailableError, match="spawn"):
        render_context.gl_context()
