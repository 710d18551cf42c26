package org.mobilefer.demo;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The native FER engine (libmobilefer_jni.so): detector + classifier + smoothing on TNN.
 *
 * <p>Not thread-safe across calls from different threads beyond what {@code synchronized} gives:
 * use one instance from the camera analysis thread and {@link #close()} it when done.
 */
public final class NativeEngine implements AutoCloseable {
    /** Library name; the host test loads the same name from java.library.path. */
    public static final String LIBRARY = "mobilefer_jni";

    static {
        System.loadLibrary(LIBRARY);
    }

    // ---- result layout written by jni_bridge.cc (kept in one place on each side; checked by version)
    static final int LAYOUT_VERSION = 1;
    static final int IDX_HEADER_SIZE = 0;
    static final int IDX_LAYOUT_VERSION = 1;
    static final int IDX_NUM_FACES = 2;
    static final int IDX_FACE_STRIDE = 3;
    static final int IDX_NUM_CLASSES = 4;
    static final int IDX_FRAME_WIDTH = 5;
    static final int IDX_FRAME_HEIGHT = 6;
    static final int IDX_TIMES = 7;  // 8 stage times, see FrameResult.STAGES
    static final int FACE_FIXED = 7;  // x1 y1 x2 y2 score label trackId, then probabilities

    /** One detected face. */
    public static final class Face {
        public final float x1, y1, x2, y2;
        public final float score;
        public final int label;
        public final int trackId;
        public final float[] probs;

        Face(float[] data, int offset, int numClasses) {
            x1 = data[offset];
            y1 = data[offset + 1];
            x2 = data[offset + 2];
            y2 = data[offset + 3];
            score = data[offset + 4];
            label = Math.round(data[offset + 5]);
            trackId = Math.round(data[offset + 6]);
            probs = new float[numClasses];
            System.arraycopy(data, offset + FACE_FIXED, probs, 0, numClasses);
        }
    }

    /** One frame's faces (upright-frame pixels) and stage times in milliseconds. */
    public static final class FrameResult {
        public static final String[] STAGES = {
            "convert", "det.pre", "det.infer", "det.post", "cls.pre", "cls.infer", "smooth", "total"};
        public final int frameWidth;
        public final int frameHeight;
        public final List<Face> faces;
        public final float[] stageMs;

        FrameResult(int frameWidth, int frameHeight, List<Face> faces, float[] stageMs) {
            this.frameWidth = frameWidth;
            this.frameHeight = frameHeight;
            this.faces = faces;
            this.stageMs = stageMs;
        }
    }

    private long handle;

    /**
     * Creates the engine.
     *
     * @throws IllegalArgumentException when a field of {@code config} is missing or invalid
     * @throws IllegalStateException when TNN cannot load the models
     */
    public NativeEngine(EngineConfig config) {
        handle = nativeCreate(config);
    }

    /** The config the native side received, what runs each network, and GPU fallback warnings. */
    public synchronized String describe() {
        return nativeDescribe(handle);
    }

    /**
     * Runs on an RGBA_8888 frame (CameraX ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888).
     *
     * @param rgba direct buffer of the first plane
     * @param rotation clockwise degrees that make the frame upright (ImageInfo.getRotationDegrees())
     * @param mirror mirror left-right after rotating (front camera, to match the mirrored preview)
     */
    public synchronized FrameResult processRgba(ByteBuffer rgba, int width, int height, int rowStride,
                                                int rotation, boolean mirror) {
        return parse(nativeProcessRgba(handle, rgba, width, height, rowStride, rotation, mirror));
    }

    /** Runs on an NV21 frame (Y plane, then interleaved V/U), e.g. from the legacy camera API. */
    public synchronized FrameResult processNv21(byte[] nv21, int width, int height, int rotation, boolean mirror) {
        return parse(nativeProcessNv21(handle, nv21, width, height, rotation, mirror));
    }

    /** Forgets tracked faces (call after switching cameras). */
    public synchronized void resetTracking() {
        nativeResetTracking(handle);
    }

    @Override
    public synchronized void close() {
        nativeRelease(handle);
        handle = 0;
    }

    static FrameResult parse(float[] data) {
        if (data == null) {
            throw new IllegalStateException("native engine returned no result");
        }
        int header = Math.round(data[IDX_HEADER_SIZE]);
        int version = Math.round(data[IDX_LAYOUT_VERSION]);
        if (version != LAYOUT_VERSION) {
            throw new IllegalStateException("native result layout " + version + ", expected " + LAYOUT_VERSION);
        }
        int numFaces = Math.round(data[IDX_NUM_FACES]);
        int stride = Math.round(data[IDX_FACE_STRIDE]);
        int numClasses = Math.round(data[IDX_NUM_CLASSES]);
        if (stride != FACE_FIXED + numClasses || data.length != header + numFaces * stride) {
            throw new IllegalStateException("native result has an inconsistent size");
        }
        List<Face> faces = new ArrayList<>(numFaces);
        for (int k = 0; k < numFaces; k++) {
            faces.add(new Face(data, header + k * stride, numClasses));
        }
        float[] times = new float[FrameResult.STAGES.length];
        System.arraycopy(data, IDX_TIMES, times, 0, times.length);
        return new FrameResult(Math.round(data[IDX_FRAME_WIDTH]), Math.round(data[IDX_FRAME_HEIGHT]),
                Collections.unmodifiableList(faces), times);
    }

    private static native long nativeCreate(EngineConfig config);

    private static native String nativeDescribe(long handle);

    private static native float[] nativeProcessRgba(long handle, ByteBuffer rgba, int width, int height,
                                                    int rowStride, int rotation, boolean mirror);

    private static native float[] nativeProcessNv21(long handle, byte[] nv21, int width, int height,
                                                    int rotation, boolean mirror);

    private static native void nativeResetTracking(long handle);

    private static native void nativeRelease(long handle);
}
