//go:build race

package main

// raceMemoryFactor scales memory bounds under the race detector, whose
// shadow memory multiplies the heap's footprint (measured here: 2–3×).
const raceMemoryFactor = 3
