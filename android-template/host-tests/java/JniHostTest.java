import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.mobilefer.demo.EngineConfig;
import org.mobilefer.demo.NativeEngine;

/**
 * Runs the app's JNI bridge (libmobilefer_jni.so built on the host with a replay engine factory) from
 * a desktop JVM, through the app's own EngineConfig and NativeEngine classes.
 *
 * <p>Usage: java -Djava.library.path=BUILD -cp CLASSES JniHostTest GOLDEN_DIR DESCRIBE_FILE
 * Prints "CHECK name PASS|FAIL detail" lines and "jni: N passed, M failed"; exit code 1 on failure.
 */
public final class JniHostTest {
    private static int passed;
    private static int failed;

    private static void check(String name, boolean ok, String detail) {
        if (ok) {
            passed++;
        } else {
            failed++;
        }
        System.out.println("CHECK " + name + " " + (ok ? "PASS" : "FAIL") + " " + detail);
    }

    // ---- golden files (see mobilefer.export.golden)
    static Map<String, String[]> readConfig(Path dir) throws IOException {
        Map<String, String[]> out = new HashMap<>();
        for (String line : Files.readAllLines(dir.resolve("config.txt"), StandardCharsets.UTF_8)) {
            String[] words = line.trim().split(" ");
            if (words.length == 0 || words[0].isEmpty()) {
                continue;
            }
            String[] values = new String[words.length - 1];
            System.arraycopy(words, 1, values, 0, values.length);
            out.put(words[0], values);
        }
        return out;
    }

    static final class Array {
        int dtype;
        int[] dims;
        ByteBuffer data;

        int count() {
            int n = 1;
            for (int d : dims) {
                n *= d;
            }
            return n;
        }

        float[] floats() {
            float[] out = new float[count()];
            data.asFloatBuffer().get(out);
            return out;
        }
    }

    static Array readArray(Path dir, String name) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(dir.resolve(name + ".bin"))).order(ByteOrder.LITTLE_ENDIAN);
        if (b.get() != 'M' || b.get() != 'F' || b.get() != 'G' || b.get() != 'V' || b.getInt() != 1) {
            throw new IOException(name + ": not a golden array");
        }
        Array a = new Array();
        a.dtype = b.getInt();
        a.dims = new int[b.getInt()];
        for (int i = 0; i < a.dims.length; i++) {
            a.dims[i] = b.getInt();
        }
        a.data = b.slice().order(ByteOrder.LITTLE_ENDIAN);
        return a;
    }

    static double[] doubles(String[] words) {
        double[] out = new double[words.length];
        for (int i = 0; i < words.length; i++) {
            out[i] = Double.parseDouble(words[i]);
        }
        return out;
    }

    static int[] ints(String[] words) {
        int[] out = new int[words.length];
        for (int i = 0; i < words.length; i++) {
            out[i] = Integer.parseInt(words[i]);
        }
        return out;
    }

    /** EngineConfig from config.txt (the app fills the same fields from mobilefer.json). */
    static EngineConfig fromGolden(Map<String, String[]> c) {
        EngineConfig e = new EngineConfig();
        int[] gray = ints(c.get("gray_weights"));
        e.grayWeightR = gray[0];
        e.grayWeightG = gray[1];
        e.grayWeightB = gray[2];
        e.grayShift = gray[3];
        e.detectorName = c.get("detector.name")[0];
        e.detectorInputName = c.get("detector.input.name")[0];
        e.detectorWidth = Integer.parseInt(c.get("detector.input.width")[0]);
        e.detectorHeight = Integer.parseInt(c.get("detector.input.height")[0]);
        e.detectorColor = c.get("detector.input.color")[0];
        e.detectorMean = doubles(c.get("detector.input.mean"));
        e.detectorStd = doubles(c.get("detector.input.std"));
        e.detectorInterpolation = c.get("detector.input.interpolation")[0];
        e.detectorScoresOutput = c.get("detector.outputs.scores")[0];
        e.detectorBoxesOutput = c.get("detector.outputs.boxes")[0];
        e.priorStrides = ints(c.get("detector.priors.strides"));
        String[] lists = c.get("detector.priors.min_boxes");
        e.priorMinBoxes = new int[lists.length][];
        for (int i = 0; i < lists.length; i++) {
            e.priorMinBoxes[i] = ints(lists[i].split(","));
        }
        e.priorCenterVariance = Double.parseDouble(c.get("detector.priors.center_variance")[0]);
        e.priorSizeVariance = Double.parseDouble(c.get("detector.priors.size_variance")[0]);
        e.priorClamp = !c.get("detector.priors.clamp")[0].equals("0");
        e.numPriors = Integer.parseInt(c.get("detector.priors.num_priors")[0]);
        e.scoreThreshold = Double.parseDouble(c.get("detector.postprocess.score_threshold")[0]);
        e.iouThreshold = Double.parseDouble(c.get("detector.postprocess.iou_threshold")[0]);
        e.candidateSize = Integer.parseInt(c.get("detector.postprocess.candidate_size")[0]);
        e.topK = Integer.parseInt(c.get("detector.postprocess.top_k")[0]);
        String p = "classifier0";
        e.classifierName = c.get(p + ".name")[0];
        e.classifierInputName = c.get(p + ".input.name")[0];
        e.classifierWidth = Integer.parseInt(c.get(p + ".input.width")[0]);
        e.classifierHeight = Integer.parseInt(c.get(p + ".input.height")[0]);
        e.classifierColor = c.get(p + ".input.color")[0];
        e.classifierMean = doubles(c.get(p + ".input.mean"));
        e.classifierStd = doubles(c.get(p + ".input.std"));
        e.classifierInterpolation = c.get(p + ".input.interpolation")[0];
        e.classifierLogitsOutput = c.get(p + ".outputs.logits")[0];
        e.labels = c.get(p + ".labels");
        e.cropMargin = Double.parseDouble(c.get(p + ".crop.margin")[0]);
        e.cropSquare = !c.get(p + ".crop.square")[0].equals("0");
        e.cropShiftY = Double.parseDouble(c.get(p + ".crop.shift_y")[0]);
        e.cropBorder = c.get(p + ".crop.border")[0];
        e.tta = !c.get(p + ".tta")[0].equals("0");
        e.smoothingEnabled = !c.get("smoothing.enabled")[0].equals("0");
        e.smoothingAlpha = Double.parseDouble(c.get("smoothing.alpha")[0]);
        e.smoothingMatchIou = Double.parseDouble(c.get("smoothing.match_iou")[0]);
        e.smoothingMaxAge = Integer.parseInt(c.get("smoothing.max_age")[0]);
        return e;
    }

    static int argmax(float[] values, int offset, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) {
            if (values[offset + i] > values[offset + best]) {
                best = i;
            }
        }
        return best;
    }

    public static void main(String[] args) throws Exception {
        Path dir = Paths.get(args[0]);
        String expectedDescription = new String(Files.readAllBytes(Paths.get(args[1])), StandardCharsets.UTF_8);
        Map<String, String[]> cfg = readConfig(dir);
        EngineConfig config = fromGolden(cfg);
        config.detectorProto = (dir.toAbsolutePath() + "|img0").getBytes(StandardCharsets.UTF_8);

        Array rgba = readArray(dir, "img0_rgba");
        int height = rgba.dims[0];
        int width = rgba.dims[1];
        int stride = width * 4 + 16;
        ByteBuffer frame = ByteBuffer.allocateDirect(stride * height);
        byte[] pixels = new byte[width * 4];
        for (int y = 0; y < height; y++) {
            rgba.data.position(y * width * 4);
            rgba.data.get(pixels);
            frame.position(y * stride);
            frame.put(pixels);
        }
        frame.position(0);
        float[] boxes = readArray(dir, "img0_det_boxes").floats();
        float[] scores = readArray(dir, "img0_det_face_scores").floats();
        float[] probs = readArray(dir, "img0_cls0_probs").floats();
        int numFaces = scores.length;
        int numClasses = config.labels.length;

        NativeEngine engine = new NativeEngine(config);
        String description = engine.describe();
        check("describe_matches_core_config", description.startsWith(expectedDescription),
                "every EngineConfig field reached C++ unchanged");
        check("describe_names_runtime", description.contains("detector.runtime replay"), "");

        NativeEngine.FrameResult r = engine.processRgba(frame, width, height, stride, 0, false);
        boolean shape = r.frameWidth == width && r.frameHeight == height && r.faces.size() == numFaces
                && r.stageMs.length == NativeEngine.FrameResult.STAGES.length && r.stageMs[7] >= 0;
        check("rgba_result_shape", shape, "faces=" + r.faces.size() + " expected=" + numFaces);
        double boxDiff = 0;
        double probDiff = 0;
        boolean labels = shape;
        for (int f = 0; shape && f < numFaces; f++) {
            NativeEngine.Face face = r.faces.get(f);
            float[] got = {face.x1, face.y1, face.x2, face.y2};
            for (int j = 0; j < 4; j++) {
                float ref = boxes[4 * f + j];
                boxDiff = Math.max(boxDiff, Math.abs(got[j] - ref) / Math.max(1.0, Math.abs(ref)));
            }
            for (int j = 0; j < numClasses; j++) {
                probDiff = Math.max(probDiff, Math.abs(face.probs[j] - probs[f * numClasses + j]));
            }
            labels = labels && face.label == argmax(probs, f * numClasses, numClasses) && face.trackId == f
                    && face.score == scores[f];
        }
        check("rgba_boxes", shape && boxDiff <= 1e-5, "max_rel_diff=" + boxDiff);
        check("rgba_probs", shape && probDiff <= 1e-5, "max_diff=" + probDiff);
        check("rgba_labels_tracks_scores", labels, "");

        NativeEngine.FrameResult again = engine.processRgba(frame, width, height, stride, 0, false);
        boolean sameTracks = again.faces.size() == numFaces;
        for (int f = 0; sameTracks && f < numFaces; f++) {
            sameTracks = again.faces.get(f).trackId == f;
        }
        check("second_frame_keeps_tracks", sameTracks, "");
        engine.resetTracking();

        Array nv21 = readArray(dir, "img0_nv21");
        byte[] nv = new byte[nv21.count()];
        nv21.data.get(nv);
        int nvWidth = nv21.dims[1];
        int nvHeight = nv21.dims[0] * 2 / 3;
        NativeEngine.FrameResult rn = engine.processNv21(nv, nvWidth, nvHeight, 90, true);
        check("nv21_rotated_frame_size", rn.frameWidth == nvHeight && rn.frameHeight == nvWidth,
                rn.frameWidth + "x" + rn.frameHeight);

        boolean threw = false;
        try {
            engine.processRgba(ByteBuffer.allocate(stride * height), width, height, stride, 0, false);
        } catch (IllegalArgumentException expected) {
            threw = expected.getMessage().contains("direct ByteBuffer");
        }
        check("rejects_heap_buffer", threw, "");
        threw = false;
        try {
            engine.processRgba(frame, width, height, stride, 45, false);
        } catch (IllegalArgumentException expected) {
            threw = true;
        }
        check("rejects_bad_rotation", threw, "");
        engine.close();
        threw = false;
        try {
            engine.describe();
        } catch (IllegalStateException expected) {
            threw = true;
        }
        check("released_engine_throws", threw, "");

        EngineConfig bad = fromGolden(cfg);
        bad.detectorProto = config.detectorProto;
        bad.classifierColor = "purple";
        threw = false;
        try {
            new NativeEngine(bad).close();
        } catch (IllegalArgumentException expected) {
            threw = expected.getMessage().contains("classifierColor");
        }
        check("rejects_unknown_color", threw, "");
        bad = fromGolden(cfg);
        bad.detectorProto = config.detectorProto;
        bad.priorMinBoxes = new int[][] {{10}};
        threw = false;
        try {
            new NativeEngine(bad).close();
        } catch (IllegalStateException expected) {
            threw = expected.getMessage().contains("min_boxes");
        }
        check("rejects_inconsistent_priors", threw, "");

        EngineConfig gpu = fromGolden(cfg);
        gpu.detectorProto = config.detectorProto;
        gpu.useGpu = true;
        try (NativeEngine e = new NativeEngine(gpu)) {
            check("gpu_fallback_warning", e.describe().contains("warnings detector: GPU unavailable"), "");
        }
        List<NativeEngine.Face> none = r.faces;
        check("faces_list_read_only", isReadOnly(none), "");

        System.out.println("jni: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    private static boolean isReadOnly(List<NativeEngine.Face> faces) {
        try {
            faces.clear();
            return false;
        } catch (UnsupportedOperationException expected) {
            return true;
        }
    }
}
