"""GLSL sources: the surface shader (PBR-lite, for the opaque pass and for shading each peeled layer), the
depth-peeling shader (finds the next layer's depth, no shading) and the resolve shader. Lighting is computed in
view space so the light rig moves with the camera and every view of an orbit is lit the same way.

Both vertex shaders declare `invariant gl_Position` and compute it with the same expression, so a layer found by
the peeling pass is shaded by an exact depth-equality test.
"""

SURFACE_VERTEX = """
#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
in vec3 in_pos;
in vec3 in_normal;
in vec4 in_color;
in float in_metallic;
in float in_roughness;
in float in_flat;
out vec3 v_pos;
out vec3 v_normal;
out vec4 v_color;
out vec2 v_mr;
out float v_flat;
invariant gl_Position;
void main() {
    vec4 p = u_view * vec4(in_pos, 1.0);
    v_pos = p.xyz;
    v_normal = mat3(u_view) * in_normal;
    v_color = in_color;
    v_mr = vec2(in_metallic, in_roughness);
    v_flat = in_flat;
    gl_Position = u_proj * p;
}
"""

# Compiled twice: TRANSLUCENT 0 (opaque pass, alpha 1) and 1 (a peeled layer, premultiplied by vertex alpha).
# No discard, so early depth testing shades only the fragments that survive.
SURFACE_FRAGMENT = """
#version 330
layout(early_fragment_tests) in;
uniform vec3 u_key_dir;
uniform vec3 u_key_color;
uniform vec3 u_fill_dir;
uniform vec3 u_fill_color;
uniform vec3 u_sky;     // hemisphere ambient from above (view-space up)
uniform vec3 u_ground;  // ... and from below
in vec3 v_pos;
in vec3 v_normal;
in vec4 v_color;
in vec2 v_mr;
in float v_flat;
layout(location = 0) out vec4 o_color;
layout(location = 1) out float o_z;  // window z (R32F), for the opaque pass

const float PI = 3.14159265;

float pow5(float x) {
    float x2 = x * x;
    return x2 * x2 * x;
}

// Key light: Lambert diffuse + GGX specular (Schlick-Smith geometry, Schlick Fresnel). No pow(): llvmpipe is
// shading-bound, so the maths is kept to multiplies.
vec3 key_light(vec3 n, vec3 v, float ndv, vec3 base, vec3 f0, float metallic, float roughness) {
    float ndl = dot(n, u_key_dir);
    if (ndl <= 0.0) return vec3(0.0);
    vec3 h = normalize(u_key_dir + v);
    float ndh = max(dot(n, h), 0.0);
    float a = max(roughness * roughness, 2e-3);
    float a2 = a * a;
    float q = ndh * ndh * (a2 - 1.0) + 1.0;
    float d = a2 / (PI * q * q);
    float k = (roughness + 1.0) * (roughness + 1.0) * 0.125;
    float vis = 1.0 / (4.0 * (ndv * (1.0 - k) + k) * (ndl * (1.0 - k) + k));  // G / (4 ndl ndv)
    vec3 f = f0 + (1.0 - f0) * pow5(1.0 - max(dot(h, v), 0.0));
    vec3 diffuse = (1.0 - f) * (1.0 - metallic) * base;
    return (diffuse + f * (d * vis * PI * 0.25)) * u_key_color * ndl;
}

void main() {
#if TRANSLUCENT
    float alpha = v_color.a;
#else
    float alpha = 1.0;
#endif
    vec3 v = normalize(-v_pos);
    vec3 face_n = normalize(cross(dFdx(v_pos), dFdy(v_pos)));
    if (dot(face_n, v) < 0.0) face_n = -face_n;
    vec3 n = v_normal;
    if (dot(n, n) < 1e-12) n = face_n;
    n = normalize(n);
    if (dot(n, face_n) < 0.0) n = -n;                // two-sided: back faces and inner walls face the viewer
    n = normalize(mix(n, face_n, clamp(v_flat, 0.0, 1.0)));
    vec3 base = v_color.rgb;
    float metallic = v_mr.x;
    float roughness = clamp(v_mr.y, 0.04, 1.0);
    vec3 f0 = mix(vec3(0.04), base, metallic);
    float ndv = max(dot(n, v), 1e-4);
    // Hemisphere ambient; the reflected direction picks sky or ground so metals are not black.
    float r_up = 2.0 * ndv * n.y - v.y;  // reflect(-v, n).y
    vec3 env_diffuse = mix(u_ground, u_sky, 0.5 + 0.5 * n.y);
    vec3 env_specular = mix(u_ground, u_sky, clamp(2.5 * r_up + 0.5, 0.0, 1.0)) * 2.0;
    vec3 env_f = f0 + (max(vec3(1.0 - roughness), f0) - f0) * pow5(1.0 - ndv);
    vec3 c = env_diffuse * base * (1.0 - metallic) + env_specular * env_f * (1.0 - 0.6 * roughness);
    c += key_light(n, v, ndv, base, f0, metallic, roughness);
    c += max(dot(n, u_fill_dir), 0.0) * (1.0 - metallic) * base * u_fill_color;  // fill: diffuse only
    c = clamp(c, 0.0, 1.0);
    o_color = vec4(c * alpha, alpha);  // premultiplied
    o_z = gl_FragCoord.z;
}
"""

PEEL_VERTEX = """
#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
in vec3 in_pos;
invariant gl_Position;
void main() {
    vec4 p = u_view * vec4(in_pos, 1.0);
    gl_Position = u_proj * p;
}
"""

# Depth peeling: with the depth test, keeps per pixel the nearest transparent fragment that lies behind the previous
# layer and in front of the nearest opaque surface, and writes its window z (exact float, R32F).
PEEL_FRAGMENT = """
#version 330
uniform bool u_first_layer;    // nothing to peel away yet
uniform sampler2D u_prev_z;    // window z of the previous layer
uniform sampler2D u_opaque_z;  // window z of the nearest opaque surface (1 = none)
out float o_z;
void main() {
    float z = gl_FragCoord.z;
    ivec2 px = ivec2(gl_FragCoord.xy);
    if (z >= texelFetch(u_opaque_z, px, 0).r) discard;
    if (!u_first_layer && z <= texelFetch(u_prev_z, px, 0).r) discard;
    o_z = z;
}
"""

FULLSCREEN_VERTEX = """
#version 330
void main() {
    vec2 p = vec2((gl_VertexID << 1) & 2, gl_VertexID & 2);
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
"""

RESOLVE_FRAGMENT = """
#version 330
uniform sampler2D u_accum;     // transparent layers, premultiplied, front to back
uniform sampler2D u_opaque;    // nearest opaque surface (a = 1 where covered)
uniform sampler2D u_first_z;   // window z of the first transparent layer (1 = none)
uniform sampler2D u_opaque_z;  // window z of the nearest opaque surface (1 = none)
uniform vec4 u_background;     // straight alpha
layout(location = 0) out vec4 o_color;
layout(location = 1) out float o_z;
void main() {
    ivec2 px = ivec2(gl_FragCoord.xy);
    vec4 c = texelFetch(u_accum, px, 0);
    c += (1.0 - c.a) * texelFetch(u_opaque, px, 0);
    c += (1.0 - c.a) * vec4(u_background.rgb * u_background.a, u_background.a);
    o_color = c.a > 0.0 ? vec4(c.rgb / c.a, c.a) : vec4(0.0);
    o_z = min(texelFetch(u_first_z, px, 0).r, texelFetch(u_opaque_z, px, 0).r);
}
"""


def surface_fragment(translucent: bool) -> str:
    """The surface fragment shader for the opaque pass or (`translucent=True`) for shading a peeled layer."""
    return SURFACE_FRAGMENT.replace("#version 330\n", f"#version 330\n#define TRANSLUCENT {int(translucent)}\n", 1)
