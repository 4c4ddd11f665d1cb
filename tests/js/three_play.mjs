// Play a GLB's animations in three.js (GLTFLoader, AnimationMixer) and print where its meshes' vertices are.
// Usage: node tests/js/three_play.mjs a.glb T0 [T1 ...]  (seconds; install first: npm ci --prefix tests/js)
// Output: a JSON array, one entry per time: {t, meshes: [{name, skinned, positions: [x, y, z, ...]}]}, positions
// in world space after skinning (SkinnedMesh.getVertexPosition); vertex-coloured files only (no image decoding).
import { readFile } from "node:fs/promises";
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";

const [path, ...times] = process.argv.slice(2);
const bytes = await readFile(path);
const gltf = await new GLTFLoader().parseAsync(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), "");
const mixer = new THREE.AnimationMixer(gltf.scene);
for (const clip of gltf.animations) mixer.clipAction(clip).play();
const frames = [];
for (const t of times.map(Number)) {
  mixer.setTime(t);
  gltf.scene.updateMatrixWorld(true);
  const meshes = [];
  gltf.scene.traverse((object) => {
    if (!object.isMesh) return;
    const vertex = new THREE.Vector3();
    const positions = [];
    for (let i = 0; i < object.geometry.attributes.position.count; i++) {
      object.getVertexPosition(i, vertex); // morph targets and skinning applied, in the mesh's own space
      if (!object.isSkinnedMesh) vertex.applyMatrix4(object.matrixWorld); // a skinned mesh's bones place it
      positions.push(vertex.x, vertex.y, vertex.z);
    }
    meshes.push({ name: object.name, skinned: Boolean(object.isSkinnedMesh), positions });
  });
  frames.push({ t, meshes });
}
process.stdout.write(JSON.stringify(frames));
