# ESP32-S3 window keypad, five keys wired to ground with internal pull-ups.
# Key order: index 0 = 非常满意 (5 stars) ... index 4 = 非常不满意 (1 star).
KEY_PINS = (4, 5, 6, 7, 15)
KEYS_ACTIVE_LOW = True  # pressed pulls the pin to ground
LED_PIN = 48
BUZZER_PIN = 21
I2C_SDA = 8  # SSD1306 128x64 display
I2C_SCL = 9
UART_TX = 17  # window-PC link (a USB-serial adapter on the PC side)
UART_RX = 18
