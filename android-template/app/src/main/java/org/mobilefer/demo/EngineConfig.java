package org.mobilefer.demo;

/**
 * Plain values handed to the native engine: every model constant comes from the bundle manifest
 * {@code mobilefer.json} ({@link BundleLoader} fills this object with org.json), none is written in
 * Java, Kotlin or C++.
 *
 * <p>jni_bridge.cc reads these fields by name and JNI type, so renaming or retyping one is an ABI
 * change: the host test (tests/test_android_core.py) compiles this class with javac and checks the
 * bridge reads every field back. Kept in Java (not Kotlin) for exactly that reason.
 */
public final class EngineConfig {
    // ---- gray conversion (bundle: gray_weights): gray = (R*r + G*g + B*b + (1 << (shift-1))) >> shift
    public int grayWeightR;
    public int grayWeightG;
    public int grayWeightB;
    public int grayShift;

    // ---- detector (bundle: detector.*)
    public String detectorName = "";
    public String detectorInputName = "";
    public int detectorWidth;
    public int detectorHeight;
    /** "gray", "rgb" or "bgr". */
    public String detectorColor = "";
    public double[] detectorMean = new double[0];
    public double[] detectorStd = new double[0];
    /** "linear" or "nearest". */
    public String detectorInterpolation = "";
    public String detectorScoresOutput = "";
    public String detectorBoxesOutput = "";
    public int[] priorStrides = new int[0];
    public int[][] priorMinBoxes = new int[0][];
    public double priorCenterVariance;
    public double priorSizeVariance;
    public boolean priorClamp;
    public int numPriors;
    public double scoreThreshold;
    public double iouThreshold;
    public int candidateSize;
    /** Maximum faces; 0 or less for no limit (bundle: top_k null). */
    public int topK;

    // ---- classifier (bundle: classifier.*)
    public String classifierName = "";
    public String classifierInputName = "";
    public int classifierWidth;
    public int classifierHeight;
    public String classifierColor = "";
    public double[] classifierMean = new double[0];
    public double[] classifierStd = new double[0];
    public String classifierInterpolation = "";
    public String classifierLogitsOutput = "";
    public String[] labels = new String[0];
    public double cropMargin;
    public boolean cropSquare;
    public double cropShiftY;
    /** "replicate" or "constant". */
    public String cropBorder = "";
    public boolean tta;

    // ---- smoothing (bundle: smoothing.*)
    public boolean smoothingEnabled = true;
    public double smoothingAlpha;
    public double smoothingMatchIou;
    public int smoothingMaxAge;

    // ---- runtime (app settings, not from the bundle)
    /** OpenCL; the engine falls back to the CPU when the GPU instance cannot be created. */
    public boolean useGpu;
    /** CPU threads, 0 for TNN's default. */
    public int numThreads;
    /** "high" (fp32, default), "normal" or "low". */
    public String precision = "high";

    // ---- model files, as contents (TNN takes contents, not paths)
    public byte[] detectorProto = new byte[0];
    public byte[] detectorModel = new byte[0];
    public byte[] classifierProto = new byte[0];
    public byte[] classifierModel = new byte[0];
}
