package org.mobilefer.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.RectF
import android.util.AttributeSet
import android.view.View
import kotlin.math.max

/**
 * Draws the faces of the latest [NativeEngine.FrameResult] over a PreviewView in FILL_CENTER mode:
 * the frame (upright, already mirrored for the front camera) is scaled to cover the view and centred.
 */
class OverlayView(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    private var result: NativeEngine.FrameResult? = null
    private var labels: List<String> = emptyList()

    private val boxPaint = Paint().apply {
        style = Paint.Style.STROKE
        strokeWidth = 4f
        color = Color.GREEN
        isAntiAlias = true
    }
    private val textPaint = Paint().apply {
        color = Color.WHITE
        textSize = 36f
        isAntiAlias = true
    }
    private val textBackground = Paint().apply { color = Color.argb(160, 0, 0, 0) }

    fun show(result: NativeEngine.FrameResult?, labels: List<String>) {
        this.result = result
        this.labels = labels
        postInvalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val r = result ?: return
        if (r.frameWidth <= 0 || r.frameHeight <= 0) return
        val scale = max(width.toFloat() / r.frameWidth, height.toFloat() / r.frameHeight)
        val dx = (width - r.frameWidth * scale) / 2f
        val dy = (height - r.frameHeight * scale) / 2f
        for (face in r.faces) {
            val box = RectF(face.x1 * scale + dx, face.y1 * scale + dy, face.x2 * scale + dx, face.y2 * scale + dy)
            canvas.drawRect(box, boxPaint)
            val name = labels.getOrElse(face.label) { "?" }
            val prob = face.probs.getOrElse(face.label) { 0f }
            val text = "%s %.0f%%".format(name, prob * 100f)
            val textWidth = textPaint.measureText(text)
            val top = max(0f, box.top - textPaint.textSize - 8f)
            canvas.drawRect(box.left, top, box.left + textWidth + 12f, top + textPaint.textSize + 8f, textBackground)
            canvas.drawText(text, box.left + 6f, top + textPaint.textSize, textPaint)
        }
    }
}
