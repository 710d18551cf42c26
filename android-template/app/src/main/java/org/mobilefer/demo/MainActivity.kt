package org.mobilefer.demo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.os.SystemClock
import android.util.Log
import android.widget.Button
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.appcompat.widget.SwitchCompat
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.core.resolutionselector.AspectRatioStrategy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Camera preview + real-time facial expression recognition with the native engine.
 *
 * Frames come from CameraX ImageAnalysis as RGBA_8888 and are processed on one background thread
 * (which also owns the engine); results are drawn by [OverlayView] with FPS and per-stage times.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var previewView: PreviewView
    private lateinit var overlay: OverlayView
    private lateinit var stats: TextView
    private lateinit var gpuSwitch: SwitchCompat

    /** Owns [engine]: every engine call happens on this thread. */
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var engine: NativeEngine? = null
    private var labels: List<String> = emptyList()
    private var runtime = ""

    private var lensFacing = CameraSelector.LENS_FACING_FRONT
    private var lastFrameAt = 0L
    private var fps = 0.0

    private val askPermission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else stats.text = getString(R.string.no_permission)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        previewView = findViewById(R.id.preview)
        overlay = findViewById(R.id.overlay)
        stats = findViewById(R.id.stats)
        gpuSwitch = findViewById(R.id.use_gpu)
        previewView.scaleType = PreviewView.ScaleType.FILL_CENTER

        findViewById<Button>(R.id.switch_camera).setOnClickListener {
            lensFacing = if (lensFacing == CameraSelector.LENS_FACING_FRONT) {
                CameraSelector.LENS_FACING_BACK
            } else {
                CameraSelector.LENS_FACING_FRONT
            }
            worker.execute { engine?.resetTracking() }
            startCamera()
        }
        gpuSwitch.setOnCheckedChangeListener { _, checked -> loadEngine(checked) }

        loadEngine(useGpu = false)
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            askPermission.launch(Manifest.permission.CAMERA)
        }
    }

    /** (Re)creates the engine on the worker thread: CPU by default, OpenCL when [useGpu]. */
    private fun loadEngine(useGpu: Boolean) {
        stats.text = getString(R.string.loading)
        worker.execute {
            engine?.close()
            engine = null
            try {
                val bundle = BundleLoader.load(assets, BUNDLE_DIR, useGpu, numThreads = 4)
                val created = NativeEngine(bundle.config)
                val description = created.describe()
                Log.i(TAG, description)
                labels = bundle.labels
                runtime = summarize(description, bundle)
                engine = created
            } catch (e: BundleException) {
                showError(e.message ?: "bundle error")
            } catch (e: UnsatisfiedLinkError) {
                // e.g. dlopen failed: library "libomp.so" not found (see README, Troubleshooting)
                showError("native library failed to load: ${e.message}")
            } catch (e: ExceptionInInitializerError) {
                showError("native library failed to load: ${e.cause?.message ?: e.message}")
            } catch (e: RuntimeException) {
                showError(e.message ?: e.toString())
            }
        }
    }

    private fun summarize(description: String, bundle: BundleLoader.Loaded): String {
        val lines = description.lines()
        val det = lines.firstOrNull { it.startsWith("detector.runtime ") }?.removePrefix("detector.runtime ") ?: "?"
        val cls = lines.firstOrNull { it.startsWith("classifier.runtime ") }?.removePrefix("classifier.runtime ") ?: "?"
        val warnings = lines.firstOrNull { it.startsWith("warnings ") }?.removePrefix("warnings ")
        return "${bundle.detectorName}: $det\n${bundle.classifierName}: $cls" + (warnings?.let { "\n! $it" } ?: "")
    }

    private fun showError(message: String) {
        Log.e(TAG, message)
        runOnUiThread {
            stats.text = message
            overlay.show(null, emptyList())
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val ratio = ResolutionSelector.Builder()
                .setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY)
                .build()
            val preview = Preview.Builder().setResolutionSelector(ratio).build()
            preview.setSurfaceProvider(previewView.surfaceProvider)
            val analysis = ImageAnalysis.Builder()
                .setResolutionSelector(ratio)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .build()
            val mirror = lensFacing == CameraSelector.LENS_FACING_FRONT
            analysis.setAnalyzer(worker) { image -> analyze(image, mirror) }
            val selector = CameraSelector.Builder().requireLensFacing(lensFacing).build()
            provider.unbindAll()
            try {
                provider.bindToLifecycle(this, selector, preview, analysis)
            } catch (e: IllegalArgumentException) {
                showError("no ${if (mirror) "front" else "back"} camera: ${e.message}")
            }
        }, ContextCompat.getMainExecutor(this))
    }

    /** Runs on [worker]. */
    private fun analyze(image: ImageProxy, mirror: Boolean) {
        image.use {
            val current = engine ?: return
            val plane = it.planes[0]
            val result = try {
                current.processRgba(plane.buffer, it.width, it.height, plane.rowStride, it.imageInfo.rotationDegrees, mirror)
            } catch (e: RuntimeException) {
                showError(e.message ?: e.toString())
                return
            }
            val now = SystemClock.elapsedRealtime()
            if (lastFrameAt > 0) {
                val instant = 1000.0 / (now - lastFrameAt).coerceAtLeast(1)
                fps = if (fps == 0.0) instant else 0.9 * fps + 0.1 * instant
            }
            lastFrameAt = now
            val times = NativeEngine.FrameResult.STAGES.indices.joinToString(" ") { k ->
                "%s %.1f".format(NativeEngine.FrameResult.STAGES[k], result.stageMs[k])
            }
            val text = "%.1f FPS  %d face(s)  %dx%d\n%s\n%s".format(
                fps, result.faces.size, result.frameWidth, result.frameHeight, times, runtime,
            )
            val names = labels
            runOnUiThread {
                overlay.show(result, names)
                stats.text = text
            }
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        worker.execute {
            engine?.close()
            engine = null
        }
        worker.shutdown()
    }

    companion object {
        private const val TAG = "mobilefer"
        /** Folder under assets/ holding the bundle (mobilefer.json + TNN files). */
        const val BUNDLE_DIR = "mobilefer"
    }
}
