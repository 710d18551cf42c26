// JNI bridge between org.mobilefer.demo.NativeEngine (Java) and mobilefer::Engine (C++).
//
// It reads the plain org.mobilefer.demo.EngineConfig object field by field into
// mobilefer::EngineConfig (no JSON on the C++ side), creates the engine through CreateEngine
// (engine_factory.h) and returns each frame's results as one float[] whose layout is described below
// and parsed by NativeEngine.java. It never includes TNN headers.
#include <jni.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/engine.h"
#include "engine_factory.h"

#if defined(__ANDROID__)
#include <android/log.h>
#define MOBILEFER_LOG(...) __android_log_print(ANDROID_LOG_INFO, "mobilefer", __VA_ARGS__)
#else
#define MOBILEFER_LOG(...) ((void)0)
#endif

namespace {

// ---- Result layout (float[]); NativeEngine.java mirrors these indices and checks kLayoutVersion.
constexpr int kLayoutVersion = 1;
constexpr int kHeaderSize = 16;
enum HeaderIndex {
  kIdxHeaderSize = 0,
  kIdxLayoutVersion = 1,
  kIdxNumFaces = 2,
  kIdxFaceStride = 3,
  kIdxNumClasses = 4,
  kIdxFrameWidth = 5,
  kIdxFrameHeight = 6,
  kIdxConvertMs = 7,
  kIdxDetectorPreMs = 8,
  kIdxDetectorInferMs = 9,
  kIdxDetectorPostMs = 10,
  kIdxClassifierPreMs = 11,
  kIdxClassifierInferMs = 12,
  kIdxSmoothingMs = 13,
  kIdxTotalMs = 14,
};
// Per face: x1, y1, x2, y2, score, label, track id, then num_classes probabilities.
constexpr int kFaceFixed = 7;

struct Handle {
  std::unique_ptr<mobilefer::Engine> engine;
  std::string warnings;
  std::mutex mutex;
};

void Throw(JNIEnv* env, const char* class_name, const std::string& message) {
  if (env->ExceptionCheck()) return;  // keep the first exception
  jclass cls = env->FindClass(class_name);
  if (cls != nullptr) env->ThrowNew(cls, message.c_str());
}

Handle* FromJava(JNIEnv* env, jlong handle) {
  if (handle == 0) {
    Throw(env, "java/lang/IllegalStateException", "the native engine was released");
    return nullptr;
  }
  return reinterpret_cast<Handle*>(static_cast<intptr_t>(handle));
}

// Reads fields of one Java object; the first problem is kept in `error` and later reads do nothing.
class FieldReader {
 public:
  FieldReader(JNIEnv* env, jobject object) : env_(env), object_(object), class_(env->GetObjectClass(object)) {}

  const std::string& error() const { return error_; }

  int Int(const char* name) {
    jfieldID id = Field(name, "I");
    return id ? env_->GetIntField(object_, id) : 0;
  }
  bool Bool(const char* name) {
    jfieldID id = Field(name, "Z");
    return id ? env_->GetBooleanField(object_, id) == JNI_TRUE : false;
  }
  double Double(const char* name) {
    jfieldID id = Field(name, "D");
    return id ? env_->GetDoubleField(object_, id) : 0.0;
  }
  std::string String(const char* name) {
    jobject value = Object(name, "Ljava/lang/String;");
    if (value == nullptr) return "";
    std::string out = ToString(static_cast<jstring>(value));
    env_->DeleteLocalRef(value);
    return out;
  }
  std::vector<double> Doubles(const char* name) {
    std::vector<double> out;
    jobject value = Object(name, "[D");
    if (value == nullptr) return out;
    jdoubleArray array = static_cast<jdoubleArray>(value);
    out.resize(static_cast<size_t>(env_->GetArrayLength(array)));
    if (!out.empty()) env_->GetDoubleArrayRegion(array, 0, static_cast<jsize>(out.size()), out.data());
    env_->DeleteLocalRef(value);
    return out;
  }
  std::vector<int> Ints(const char* name) {
    jobject value = Object(name, "[I");
    if (value == nullptr) return {};
    std::vector<int> out = ToInts(static_cast<jintArray>(value));
    env_->DeleteLocalRef(value);
    return out;
  }
  std::vector<std::vector<int>> IntLists(const char* name) {
    std::vector<std::vector<int>> out;
    jobject value = Object(name, "[[I");
    if (value == nullptr) return out;
    jobjectArray array = static_cast<jobjectArray>(value);
    const jsize n = env_->GetArrayLength(array);
    for (jsize i = 0; i < n; ++i) {
      jobject row = env_->GetObjectArrayElement(array, i);
      if (row == nullptr) {
        Fail(std::string(name) + "[" + std::to_string(i) + "] is null");
        break;
      }
      out.push_back(ToInts(static_cast<jintArray>(row)));
      env_->DeleteLocalRef(row);
    }
    env_->DeleteLocalRef(value);
    return out;
  }
  int ArrayLength(const char* name, const char* signature) {
    jobject value = Object(name, signature);
    if (value == nullptr) return 0;
    const int n = env_->GetArrayLength(static_cast<jarray>(value));
    env_->DeleteLocalRef(value);
    return n;
  }
  std::string Bytes(const char* name) {
    jobject value = Object(name, "[B");
    if (value == nullptr) return "";
    jbyteArray array = static_cast<jbyteArray>(value);
    std::string out(static_cast<size_t>(env_->GetArrayLength(array)), '\0');
    if (!out.empty()) {
      env_->GetByteArrayRegion(array, 0, static_cast<jsize>(out.size()), reinterpret_cast<jbyte*>(&out[0]));
    }
    env_->DeleteLocalRef(value);
    return out;
  }

 private:
  void Fail(const std::string& message) {
    if (error_.empty()) error_ = message;
  }
  jfieldID Field(const char* name, const char* signature) {
    if (!error_.empty()) return nullptr;
    jfieldID id = env_->GetFieldID(class_, name, signature);
    if (id == nullptr) {
      env_->ExceptionClear();  // NoSuchFieldError: reported as our own message instead
      Fail(std::string("EngineConfig has no field '") + name + "' of JNI type " + signature);
    }
    return id;
  }
  jobject Object(const char* name, const char* signature) {
    jfieldID id = Field(name, signature);
    if (id == nullptr) return nullptr;
    jobject value = env_->GetObjectField(object_, id);
    if (value == nullptr) Fail(std::string("EngineConfig.") + name + " is null");
    return value;
  }
  std::string ToString(jstring value) {
    const char* chars = env_->GetStringUTFChars(value, nullptr);
    std::string out = chars ? chars : "";
    if (chars) env_->ReleaseStringUTFChars(value, chars);
    return out;
  }
  std::vector<int> ToInts(jintArray array) {
    std::vector<jint> raw(static_cast<size_t>(env_->GetArrayLength(array)));
    if (!raw.empty()) env_->GetIntArrayRegion(array, 0, static_cast<jsize>(raw.size()), raw.data());
    return std::vector<int>(raw.begin(), raw.end());
  }

  JNIEnv* env_;
  jobject object_;
  jclass class_;
  std::string error_;
};

bool ReadEnum(FieldReader* r, const char* field, std::string* error, bool (*parse)(const std::string&, void*),
              void* out) {
  const std::string value = r->String(field);
  if (!r->error().empty()) return false;
  if (!parse(value, out)) {
    *error = std::string("EngineConfig.") + field + " has an unknown value '" + value + "'";
    return false;
  }
  return true;
}

bool ParseColorVoid(const std::string& s, void* out) {
  return mobilefer::ParseColorOrder(s, static_cast<mobilefer::ColorOrder*>(out));
}
bool ParseInterpolationVoid(const std::string& s, void* out) {
  return mobilefer::ParseInterpolation(s, static_cast<mobilefer::Interpolation*>(out));
}
bool ParseBorderVoid(const std::string& s, void* out) {
  return mobilefer::ParseBorderMode(s, static_cast<mobilefer::BorderMode*>(out));
}
bool ParsePrecisionVoid(const std::string& s, void* out) {
  auto* p = static_cast<mobilefer::Precision*>(out);
  if (s == "high") {
    *p = mobilefer::Precision::kHigh;
  } else if (s == "normal") {
    *p = mobilefer::Precision::kNormal;
  } else if (s == "low") {
    *p = mobilefer::Precision::kLow;
  } else {
    return false;
  }
  return true;
}

// EngineConfig (Java) -> config, models and runtime options. Returns an error message or "".
std::string ReadConfig(JNIEnv* env, jobject object, mobilefer::EngineConfig* config, mobilefer::ModelData* detector,
                       mobilefer::ModelData* classifier, mobilefer::RuntimeOptions* options) {
  FieldReader r(env, object);
  std::string error;
  config->gray_weights.r = r.Int("grayWeightR");
  config->gray_weights.g = r.Int("grayWeightG");
  config->gray_weights.b = r.Int("grayWeightB");
  config->gray_weights.shift = r.Int("grayShift");
  mobilefer::DetectorConfig& d = config->detector;
  d.name = r.String("detectorName");
  d.input.name = r.String("detectorInputName");
  d.input.width = r.Int("detectorWidth");
  d.input.height = r.Int("detectorHeight");
  if (!ReadEnum(&r, "detectorColor", &error, ParseColorVoid, &d.input.color)) return r.error() + error;
  d.input.mean = r.Doubles("detectorMean");
  d.input.std = r.Doubles("detectorStd");
  if (!ReadEnum(&r, "detectorInterpolation", &error, ParseInterpolationVoid, &d.input.interpolation)) {
    return r.error() + error;
  }
  d.scores_output = r.String("detectorScoresOutput");
  d.boxes_output = r.String("detectorBoxesOutput");
  d.priors.strides = r.Ints("priorStrides");
  d.priors.min_boxes = r.IntLists("priorMinBoxes");
  d.priors.center_variance = r.Double("priorCenterVariance");
  d.priors.size_variance = r.Double("priorSizeVariance");
  d.priors.clamp = r.Bool("priorClamp");
  d.priors.num_priors = r.Int("numPriors");
  d.postprocess.score_threshold = r.Double("scoreThreshold");
  d.postprocess.iou_threshold = r.Double("iouThreshold");
  d.postprocess.candidate_size = r.Int("candidateSize");
  d.postprocess.top_k = r.Int("topK");

  mobilefer::ClassifierConfig& c = config->classifier;
  c.name = r.String("classifierName");
  c.input.name = r.String("classifierInputName");
  c.input.width = r.Int("classifierWidth");
  c.input.height = r.Int("classifierHeight");
  if (!ReadEnum(&r, "classifierColor", &error, ParseColorVoid, &c.input.color)) return r.error() + error;
  c.input.mean = r.Doubles("classifierMean");
  c.input.std = r.Doubles("classifierStd");
  if (!ReadEnum(&r, "classifierInterpolation", &error, ParseInterpolationVoid, &c.input.interpolation)) {
    return r.error() + error;
  }
  c.logits_output = r.String("classifierLogitsOutput");
  c.num_classes = r.ArrayLength("labels", "[Ljava/lang/String;");
  c.crop.margin = r.Double("cropMargin");
  c.crop.square = r.Bool("cropSquare");
  c.crop.shift_y = r.Double("cropShiftY");
  if (!ReadEnum(&r, "cropBorder", &error, ParseBorderVoid, &c.crop.border)) return r.error() + error;
  c.tta = r.Bool("tta");

  config->smoothing.enabled = r.Bool("smoothingEnabled");
  config->smoothing.alpha = r.Double("smoothingAlpha");
  config->smoothing.match_iou = r.Double("smoothingMatchIou");
  config->smoothing.max_age = r.Int("smoothingMaxAge");

  options->use_gpu = r.Bool("useGpu");
  options->num_threads = r.Int("numThreads");
  if (!ReadEnum(&r, "precision", &error, ParsePrecisionVoid, &options->precision)) return r.error() + error;

  detector->proto = r.Bytes("detectorProto");
  detector->model = r.Bytes("detectorModel");
  classifier->proto = r.Bytes("classifierProto");
  classifier->model = r.Bytes("classifierModel");
  return r.error();
}

jfloatArray ToJava(JNIEnv* env, const mobilefer::FrameResult& result, int num_classes) {
  const int stride = kFaceFixed + num_classes;
  std::vector<float> out(kHeaderSize + result.faces.size() * static_cast<size_t>(stride), 0.f);
  out[kIdxHeaderSize] = static_cast<float>(kHeaderSize);
  out[kIdxLayoutVersion] = static_cast<float>(kLayoutVersion);
  out[kIdxNumFaces] = static_cast<float>(result.faces.size());
  out[kIdxFaceStride] = static_cast<float>(stride);
  out[kIdxNumClasses] = static_cast<float>(num_classes);
  out[kIdxFrameWidth] = static_cast<float>(result.width);
  out[kIdxFrameHeight] = static_cast<float>(result.height);
  const mobilefer::StageTimes& t = result.times;
  out[kIdxConvertMs] = static_cast<float>(t.convert_ms);
  out[kIdxDetectorPreMs] = static_cast<float>(t.detector_pre_ms);
  out[kIdxDetectorInferMs] = static_cast<float>(t.detector_infer_ms);
  out[kIdxDetectorPostMs] = static_cast<float>(t.detector_post_ms);
  out[kIdxClassifierPreMs] = static_cast<float>(t.classifier_pre_ms);
  out[kIdxClassifierInferMs] = static_cast<float>(t.classifier_infer_ms);
  out[kIdxSmoothingMs] = static_cast<float>(t.smoothing_ms);
  out[kIdxTotalMs] = static_cast<float>(t.total_ms);
  for (size_t k = 0; k < result.faces.size(); ++k) {
    const mobilefer::FaceResult& f = result.faces[k];
    float* o = out.data() + kHeaderSize + k * static_cast<size_t>(stride);
    for (int i = 0; i < 4; ++i) o[i] = f.box[i];
    o[4] = f.score;
    o[5] = static_cast<float>(f.label);
    o[6] = static_cast<float>(f.track_id);
    for (int i = 0; i < num_classes && i < static_cast<int>(f.probs.size()); ++i) o[kFaceFixed + i] = f.probs[i];
  }
  jfloatArray array = env->NewFloatArray(static_cast<jsize>(out.size()));
  if (array != nullptr) env->SetFloatArrayRegion(array, 0, static_cast<jsize>(out.size()), out.data());
  return array;
}

jfloatArray Process(JNIEnv* env, Handle* handle, const mobilefer::Frame& frame) {
  mobilefer::FrameResult result;
  std::string error;
  bool ok = false;
  {
    std::lock_guard<std::mutex> lock(handle->mutex);
    ok = handle->engine->Process(frame, &result, &error);
  }
  if (!ok) {
    Throw(env, "java/lang/IllegalArgumentException", "frame processing failed: " + error);
    return nullptr;
  }
  return ToJava(env, result, handle->engine->config().classifier.num_classes);
}

bool ValidRotation(jint rotation) { return rotation == 0 || rotation == 90 || rotation == 180 || rotation == 270; }

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_org_mobilefer_demo_NativeEngine_nativeCreate(JNIEnv* env, jclass, jobject config) {
  if (config == nullptr) {
    Throw(env, "java/lang/IllegalArgumentException", "EngineConfig is null");
    return 0;
  }
  mobilefer::EngineConfig engine_config;
  mobilefer::ModelData detector;
  mobilefer::ModelData classifier;
  mobilefer::RuntimeOptions options;
  const std::string problem = ReadConfig(env, config, &engine_config, &detector, &classifier, &options);
  if (!problem.empty()) {
    Throw(env, "java/lang/IllegalArgumentException", problem);
    return 0;
  }
  std::string message;
  std::unique_ptr<mobilefer::Engine> engine =
      mobilefer::CreateEngine(engine_config, detector, classifier, options, &message);
  if (!engine) {
    Throw(env, "java/lang/IllegalStateException", "cannot create the native engine: " + message);
    return 0;
  }
  auto* handle = new Handle();
  handle->engine = std::move(engine);
  handle->warnings = message;
  MOBILEFER_LOG("engine created:\n%s%s", handle->engine->Describe().c_str(), message.c_str());
  return static_cast<jlong>(reinterpret_cast<intptr_t>(handle));
}

JNIEXPORT jstring JNICALL Java_org_mobilefer_demo_NativeEngine_nativeDescribe(JNIEnv* env, jclass, jlong h) {
  Handle* handle = FromJava(env, h);
  if (handle == nullptr) return nullptr;
  std::string text = handle->engine->Describe();
  if (!handle->warnings.empty()) text += "warnings " + handle->warnings + "\n";
  return env->NewStringUTF(text.c_str());
}

JNIEXPORT jfloatArray JNICALL Java_org_mobilefer_demo_NativeEngine_nativeProcessRgba(
    JNIEnv* env, jclass, jlong h, jobject buffer, jint width, jint height, jint row_stride, jint rotation,
    jboolean mirror) {
  Handle* handle = FromJava(env, h);
  if (handle == nullptr) return nullptr;
  if (buffer == nullptr || width < 1 || height < 1 || row_stride < 4 * width || !ValidRotation(rotation)) {
    Throw(env, "java/lang/IllegalArgumentException",
          "processRgba needs a buffer, width/height >= 1, rowStride >= 4 * width and rotation 0/90/180/270");
    return nullptr;
  }
  auto* data = static_cast<const uint8_t*>(env->GetDirectBufferAddress(buffer));
  const jlong capacity = env->GetDirectBufferCapacity(buffer);
  const jlong needed = static_cast<jlong>(row_stride) * (height - 1) + 4LL * width;
  if (data == nullptr || capacity < needed) {
    Throw(env, "java/lang/IllegalArgumentException",
          "processRgba needs a direct ByteBuffer of at least rowStride * (height - 1) + 4 * width bytes");
    return nullptr;
  }
  mobilefer::Frame frame;
  frame.format = mobilefer::FrameFormat::kRgba;
  frame.data = data;
  frame.width = width;
  frame.height = height;
  frame.row_stride = row_stride;
  frame.rotation_cw = rotation;
  frame.mirror = mirror == JNI_TRUE;
  return Process(env, handle, frame);
}

JNIEXPORT jfloatArray JNICALL Java_org_mobilefer_demo_NativeEngine_nativeProcessNv21(
    JNIEnv* env, jclass, jlong h, jbyteArray nv21, jint width, jint height, jint rotation, jboolean mirror) {
  Handle* handle = FromJava(env, h);
  if (handle == nullptr) return nullptr;
  if (nv21 == nullptr || width < 2 || height < 2 || (width % 2) || (height % 2) || !ValidRotation(rotation)) {
    Throw(env, "java/lang/IllegalArgumentException",
          "processNv21 needs a byte array, even width/height >= 2 and rotation 0/90/180/270");
    return nullptr;
  }
  const jsize length = env->GetArrayLength(nv21);
  if (static_cast<jlong>(length) < static_cast<jlong>(width) * height * 3 / 2) {
    Throw(env, "java/lang/IllegalArgumentException", "NV21 array is shorter than width * height * 3 / 2");
    return nullptr;
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(length));
  env->GetByteArrayRegion(nv21, 0, length, reinterpret_cast<jbyte*>(bytes.data()));
  mobilefer::Frame frame;
  frame.format = mobilefer::FrameFormat::kNv21;
  frame.data = bytes.data();
  frame.width = width;
  frame.height = height;
  frame.row_stride = width;
  frame.rotation_cw = rotation;
  frame.mirror = mirror == JNI_TRUE;
  return Process(env, handle, frame);
}

JNIEXPORT void JNICALL Java_org_mobilefer_demo_NativeEngine_nativeResetTracking(JNIEnv* env, jclass, jlong h) {
  Handle* handle = FromJava(env, h);
  if (handle == nullptr) return;
  std::lock_guard<std::mutex> lock(handle->mutex);
  handle->engine->ResetTracking();
}

JNIEXPORT void JNICALL Java_org_mobilefer_demo_NativeEngine_nativeRelease(JNIEnv*, jclass, jlong h) {
  if (h == 0) return;
  delete reinterpret_cast<Handle*>(static_cast<intptr_t>(h));
}

}  // extern "C"
