// Top-level build file. Versions: Android Gradle Plugin 8.5 (needs JDK 17 and Gradle 8.7+), Kotlin 1.9.
plugins {
    id("com.android.application") version "8.5.2" apply false
    id("org.jetbrains.kotlin.android") version "1.9.24" apply false
}
