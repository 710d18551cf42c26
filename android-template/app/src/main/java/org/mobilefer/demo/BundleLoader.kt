package org.mobilefer.demo

import android.content.res.AssetManager
import org.json.JSONArray
import org.json.JSONObject
import java.io.FileNotFoundException
import java.security.MessageDigest

/** A bundle problem the user can fix (missing assets, wrong schema, damaged file). */
class BundleException(message: String, cause: Throwable? = null) : Exception(message, cause)

/**
 * Reads the bundle manifest `assets/<dir>/mobilefer.json` (schema_version 1, written by
 * `mobilefer export --format android`) with Android's org.json and fills an [EngineConfig].
 *
 * Every model constant comes from the manifest; nothing is repeated here. Model files are checked
 * against the manifest's `files_sha256`.
 */
object BundleLoader {
    const val MANIFEST = "mobilefer.json"

    class Loaded(val config: EngineConfig, val labels: List<String>, val detectorName: String, val classifierName: String)

    fun load(assets: AssetManager, dir: String, useGpu: Boolean, numThreads: Int): Loaded {
        val text = try {
            assets.open("$dir/$MANIFEST").bufferedReader().use { it.readText() }
        } catch (e: FileNotFoundException) {
            throw BundleException(
                "assets/$dir/$MANIFEST is missing: run `mobilefer export --format android " +
                    "app/src/main/assets/$dir` and rebuild the app", e,
            )
        }
        val m = JSONObject(text)
        if (m.optString("schema") != "mobilefer-bundle" || m.optInt("schema_version") != 1) {
            throw BundleException("assets/$dir/$MANIFEST is not a mobilefer bundle manifest of schema_version 1")
        }
        val hashes = m.optJSONObject("files_sha256") ?: JSONObject()
        fun read(name: String): ByteArray {
            val bytes = try {
                assets.open("$dir/$name").use { it.readBytes() }
            } catch (e: FileNotFoundException) {
                throw BundleException("assets/$dir/$name (listed in $MANIFEST) is missing", e)
            }
            val expected = hashes.optString(name, "")
            if (expected.isNotEmpty()) {
                val actual = MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
                if (actual != expected) throw BundleException("assets/$dir/$name is damaged (SHA-256 mismatch)")
            }
            return bytes
        }

        val gray = m.getJSONObject("gray_weights")
        val det = m.getJSONObject("detector")
        val detIn = det.getJSONObject("input")
        val priors = det.getJSONObject("priors")
        val post = det.getJSONObject("postprocess")
        val cls = m.getJSONObject("classifier")
        val clsIn = cls.getJSONObject("input")
        val crop = cls.getJSONObject("crop")
        val smoothing = m.getJSONObject("smoothing")
        val labels = cls.getJSONArray("labels").strings()

        val config = EngineConfig().apply {
            grayWeightR = gray.getInt("r")
            grayWeightG = gray.getInt("g")
            grayWeightB = gray.getInt("b")
            grayShift = gray.getInt("shift")

            detectorName = det.getString("name")
            detectorInputName = detIn.getString("name")
            detectorWidth = detIn.getInt("width")
            detectorHeight = detIn.getInt("height")
            detectorColor = detIn.getString("color")
            detectorMean = detIn.getJSONArray("mean").doubles()
            detectorStd = detIn.getJSONArray("std").doubles()
            detectorInterpolation = detIn.getString("interpolation")
            detectorScoresOutput = det.getJSONObject("outputs").getString("scores")
            detectorBoxesOutput = det.getJSONObject("outputs").getString("boxes")
            priorStrides = priors.getJSONArray("strides").ints()
            val minBoxes = priors.getJSONArray("min_boxes")
            priorMinBoxes = Array(minBoxes.length()) { minBoxes.getJSONArray(it).ints() }
            priorCenterVariance = priors.getDouble("center_variance")
            priorSizeVariance = priors.getDouble("size_variance")
            priorClamp = priors.getBoolean("clamp")
            numPriors = priors.getInt("num_priors")
            scoreThreshold = post.getDouble("score_threshold")
            iouThreshold = post.getDouble("iou_threshold")
            candidateSize = post.getInt("candidate_size")
            topK = if (post.isNull("top_k")) 0 else post.getInt("top_k")

            classifierName = cls.getString("name")
            classifierInputName = clsIn.getString("name")
            classifierWidth = clsIn.getInt("width")
            classifierHeight = clsIn.getInt("height")
            classifierColor = clsIn.getString("color")
            classifierMean = clsIn.getJSONArray("mean").doubles()
            classifierStd = clsIn.getJSONArray("std").doubles()
            classifierInterpolation = clsIn.getString("interpolation")
            classifierLogitsOutput = cls.getJSONObject("outputs").getString("logits")
            this.labels = labels.toTypedArray()
            cropMargin = crop.getDouble("margin")
            cropSquare = crop.getBoolean("square")
            cropShiftY = crop.getDouble("shift_y")
            cropBorder = crop.getString("border")
            tta = cls.optBoolean("tta", false)

            smoothingEnabled = true
            smoothingAlpha = smoothing.getDouble("alpha")
            smoothingMatchIou = smoothing.getDouble("match_iou")
            smoothingMaxAge = smoothing.getInt("max_age")

            this.useGpu = useGpu
            this.numThreads = numThreads
            precision = "high"

            val detFiles = det.getJSONObject("files")
            val clsFiles = cls.getJSONObject("files")
            detectorProto = read(detFiles.getString("tnnproto"))
            detectorModel = read(detFiles.getString("tnnmodel"))
            classifierProto = read(clsFiles.getString("tnnproto"))
            classifierModel = read(clsFiles.getString("tnnmodel"))
        }
        return Loaded(config, labels, config.detectorName, config.classifierName)
    }

    private fun JSONArray.doubles() = DoubleArray(length()) { getDouble(it) }
    private fun JSONArray.ints() = IntArray(length()) { getInt(it) }
    private fun JSONArray.strings() = List(length()) { getString(it) }
}
