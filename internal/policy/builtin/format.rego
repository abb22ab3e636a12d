# Formatting helpers shared by the built-in policies. Messages print
# shares as percentages with one decimal, computed on integers so that no
# float noise (0.0999999) reaches a person.
package qsp.builtin.format

# pct formats a ratio as a percentage: pct(1.0432) == "104.3%".
pct(x) := sprintf("%s%%", [dec1(x * 100)])

# dec1 formats a number with one decimal: dec1(14.44) == "14.4".
dec1(x) := s if {
	tenths := round(x * 10)
	tenths >= 0
	s := sprintf("%d.%d", [floor(tenths / 10), tenths % 10])
}

dec1(x) := s if {
	tenths := round(x * 10)
	tenths < 0
	s := sprintf("-%d.%d", [floor(abs(tenths) / 10), abs(tenths) % 10])
}

# max_listed is how many IDs a message lists before "and N more".
max_listed := 5

# list joins the first max_listed strings of xs: "a, b, c and 4 more".
list(xs) := list_n(array.slice(xs, 0, max_listed), count(xs))

# list_n joins the listed strings xs of n in all, so that callers can
# build only the strings they list.
list_n(xs, n) := concat(", ", xs) if n <= count(xs)

list_n(xs, n) := sprintf("%s and %d more", [concat(", ", xs), n - count(xs)]) if n > count(xs)

# change describes the change at a gate: "feature 1.4.2", "rollback".
change := sprintf("%s %s", [input.change.kind, input.change.version]) if {
	input.change.version != ""
}

change := input.change.kind if {
	not input.change.version
}

change := input.change.kind if {
	input.change.version == ""
}

# plural returns word for n == 1 and word + "s" otherwise.
plural(n, word) := word if n == 1

plural(n, word) := concat("", [word, "s"]) if n != 1
