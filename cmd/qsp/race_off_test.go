//go:build !race

package main

// raceMemoryFactor scales memory bounds under the race detector.
const raceMemoryFactor = 1
