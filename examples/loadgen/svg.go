package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// svgChart draws throughput against concurrency, one panel per scenario:
// the HTTP rate (solid) and the in-process limit's rate (dashed), with the
// x axis in log scale. It is hand-written SVG with no dependencies.
func svgChart(results []Result, scenarios []string) string {
	const panelW, panelH = 460, 340
	const left, right, top, bottom = 72, 20, 58, 52
	var panels []string
	for _, s := range scenarios {
		var pts []Result
		for _, r := range results {
			if r.Scenario == s && r.Stored == 0 {
				pts = append(pts, r)
			}
		}
		if len(pts) > 0 {
			panels = append(panels, s)
		}
	}
	width := max(1, len(panels)) * panelW
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, panelH, width, panelH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, panelH)
	for i, s := range panels {
		var pts []Result
		for _, r := range results {
			if r.Scenario == s && r.Stored == 0 {
				pts = append(pts, r)
			}
		}
		slices.SortFunc(pts, func(a, b Result) int { return a.Clients - b.Clients })
		x0 := i * panelW
		plotW, plotH := float64(panelW-left-right), float64(panelH-top-bottom)
		minC, maxC := float64(pts[0].Clients), float64(pts[len(pts)-1].Clients)
		xOf := func(c int) float64 {
			if maxC == minC {
				return float64(x0+left) + plotW/2
			}
			return float64(x0+left) + plotW*(math.Log2(float64(c))-math.Log2(minC))/(math.Log2(maxC)-math.Log2(minC))
		}
		peak := 0.0
		for _, p := range pts {
			peak = max(peak, p.RPS, p.LimitRPS)
		}
		yMax := niceCeil(peak)
		yOf := func(v float64) float64 { return float64(panelH-bottom) - plotH*v/yMax }

		fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s: requests/s against concurrent clients</text>`+"\n", x0+left, html.EscapeString(s))
		fmt.Fprintf(&b, `<line x1="%d" y1="36" x2="%d" y2="36" stroke="#1f77b4" stroke-width="2.5"/><text x="%d" y="40">HTTP (example server, bbolt, fsync on)</text>`+"\n", x0+left, x0+left+24, x0+left+30)
		fmt.Fprintf(&b, `<line x1="%d" y1="50" x2="%d" y2="50" stroke="#ff7f0e" stroke-width="2.5" stroke-dasharray="6 4"/><text x="%d" y="54">limit: %s</text>`+"\n", x0+left, x0+left+24, x0+left+30, html.EscapeString(pts[0].LimitName))
		// Grid and y ticks.
		for k := 0; k <= 5; k++ {
			v := yMax * float64(k) / 5
			y := yOf(v)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", x0+left, y, x0+panelW-right, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0+left-6, y+4, humanRate(v))
		}
		// x ticks at each measured concurrency.
		for _, p := range pts {
			x := xOf(p.Clients)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999"/>`+"\n", x, panelH-bottom, x, panelH-bottom+5)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x, panelH-bottom+18, p.Clients)
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", x0+left, panelH-bottom, x0+panelW-right, panelH-bottom)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", x0+left, top, x0+left, panelH-bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">concurrent clients (log scale)</text>`+"\n", float64(x0+left)+plotW/2, panelH-12)
		fmt.Fprintf(&b, `<text transform="translate(%d %.1f) rotate(-90)" text-anchor="middle">requests/s</text>`+"\n", x0+16, top+plotH/2)
		// Series.
		for _, series := range []struct {
			color, dash string
			val         func(Result) float64
		}{
			{"#ff7f0e", ` stroke-dasharray="6 4"`, func(r Result) float64 { return r.LimitRPS }},
			{"#1f77b4", "", func(r Result) float64 { return r.RPS }},
		} {
			var path []string
			for _, p := range pts {
				path = append(path, fmt.Sprintf("%.1f,%.1f", xOf(p.Clients), yOf(series.val(p))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2.5"%s points="%s"/>`+"\n", series.color, series.dash, strings.Join(path, " "))
			for _, p := range pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%d clients: %.0f/s</title></circle>`+"\n",
					xOf(p.Clients), yOf(series.val(p)), series.color, p.Clients, series.val(p))
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a
// power of ten, so the plot fills most of its height.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// humanRate writes a tick label: 1500 as 1.5k.
func humanRate(v float64) string {
	if v >= 1000 {
		s := fmt.Sprintf("%.1f", v/1000)
		return strings.TrimSuffix(s, ".0") + "k"
	}
	return fmt.Sprintf("%.0f", v)
}
